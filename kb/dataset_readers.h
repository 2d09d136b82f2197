// The built-in dataset readers: one function per dataset that turns one JSON record into the KB
// text the original CT3 trains on (ct3_original.md §1.2). The strings are exact; TTT trains on them.
//
// Each function receives a record that is already known to be a JSON object, and `where` (file and
// record, see record_location) for its errors: a missing or non-string field is ct3::Error
// (bad_format) naming the file, record, field and reader.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ct3::kb {

using RecordText = std::string (*)(const nlohmann::json & record, const std::string & where);

struct DatasetReader {
    const char * name;          // dataset / reader id, as written in --datasets
    const char * default_path;  // relative to the data root; nullptr = user-supplied (NAME=PATH only)
    const char * schema;        // the fields it reads, for hints
    RecordText text;
};

// All built-in readers: first the ones with a file under the data root (the `--datasets all` order),
// then the user-supplied ones.
const std::vector<DatasetReader> & dataset_readers();
// nullptr when `name` is not a built-in reader.
const DatasetReader * find_dataset_reader(const std::string & name);

// question + " " + answer (GSM8K; same shape as the original's Orca-Math text).
std::string gsm8k_text(const nlohmann::json & record, const std::string & where);
// original_text + " " + equation + " The answer is " + ans + "." (MAWPS trainset; see the .cpp).
std::string mawps_text(const nlohmann::json & record, const std::string & where);
// instruction + input + output, no separator (LLM-Adapters math_data.json, stand-in for math_50k).
std::string math_data_text(const nlohmann::json & record, const std::string & where);
// "\"\"\"\n" + text + "\n" + test_list[0] + "\n\"\"\"\n": the MBPP eval prompt, no reference code.
std::string mbpp_text(const nlohmann::json & record, const std::string & where);
// The raw `code` of a standard-library function (stand-in for The Stack's `content`).
std::string python_code_text(const nlohmann::json & record, const std::string & where);
// lm-eval CoQA doc_to_text (story, every Q/A turn, the last answer left open as "A:") + " " + the
// last gold answer. Rows of EleutherAI/coqa: questions/answers are {input_text: [...]}; the CoQA
// distribution's per-story lists of {input_text, turn_id} objects are accepted as well.
std::string coqa_text(const nlohmann::json & record, const std::string & where);
// query + " " + response.
std::string metamathqa_text(const nlohmann::json & record, const std::string & where);
// question + " " + answer.
std::string orca_math_text(const nlohmann::json & record, const std::string & where);
// instruction + input + output, no separator (the original math_50k rule).
std::string math_50k_text(const nlohmann::json & record, const std::string & where);
// The raw file `content`.
std::string the_stack_python_text(const nlohmann::json & record, const std::string & where);

}  // namespace ct3::kb
