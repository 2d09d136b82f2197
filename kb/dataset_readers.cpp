#include "kb/dataset_readers.h"

#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "models/close_names.h"
#include "models/error.h"

namespace ct3::kb {

namespace {

using json = nlohmann::json;

const json & field(const json & record, const char * name, const std::string & where, const char * reader) {
    const auto it = record.find(name);
    if (it == record.end()) {
        std::vector<std::string> keys;
        for (auto k = record.begin(); k != record.end(); ++k) keys.push_back(k.key());
        fail(ErrorKind::bad_format, "{}: field '{}' is missing (reader '{}'; the record has {}){}", where, name, reader,
             keys.empty() ? std::string("no fields") : "'" + fmt::format("{}", fmt::join(keys, "', '")) + "'",
             describe_close_names(name, keys));
    }
    return *it;
}

const std::string & string_field(const json & record, const char * name, const std::string & where,
                                 const char * reader) {
    const json & value = field(record, name, where, reader);
    CT3_CHECK(value.is_string(), ErrorKind::bad_format, "{}: field '{}' must be a string, got {} (reader '{}')", where,
              name, value.type_name(), reader);
    return value.get_ref<const std::string &>();
}

// The strings of a CoQA turn list: {input_text: [...]} (Hugging Face EleutherAI/coqa) or
// [{input_text, turn_id, ...}, ...] (the CoQA distribution's JSON).
std::vector<std::string> coqa_turns(const json & record, const char * name, const std::string & where) {
    const json & turns = field(record, name, where, "coqa");
    std::vector<std::string> out;
    auto take = [&](const json & text, size_t i) {
        CT3_CHECK(text.is_string(), ErrorKind::bad_format, "{}: {}.input_text[{}] must be a string, got {} (reader 'coqa')",
                  where, name, i, text.type_name());
        out.push_back(text.get<std::string>());
    };
    if (turns.is_object()) {
        const json & texts = field(turns, "input_text", where + " " + name, "coqa");
        CT3_CHECK(texts.is_array(), ErrorKind::bad_format, "{}: {}.input_text must be an array, got {} (reader 'coqa')",
                  where, name, texts.type_name());
        for (size_t i = 0; i < texts.size(); ++i) take(texts[i], i);
    } else if (turns.is_array()) {
        for (size_t i = 0; i < turns.size(); ++i) {
            CT3_CHECK(turns[i].is_object(), ErrorKind::bad_format,
                      "{}: {}[{}] must be an object with input_text (reader 'coqa')", where, name, i);
            take(field(turns[i], "input_text", fmt::format("{} {}[{}]", where, name, i), "coqa"), i);
        }
    } else {
        fail(ErrorKind::bad_format, "{}: field '{}' must be {{input_text: [...]}} or a list of turns, got {} (reader 'coqa')",
             where, name, turns.type_name());
    }
    return out;
}

// MAWPS answers are floats (2.0) or strings ("12"); integral floats are written without ".0",
// like the "The answer is 4." endings of LLM-Adapters' math_data outputs.
std::string mawps_answer(const json & ans, const std::string & where) {
    if (ans.is_string()) return ans.get<std::string>();
    CT3_CHECK(ans.is_number(), ErrorKind::bad_format, "{}: field 'ans' must be a number or a string, got {} (reader 'mawps')",
              where, ans.type_name());
    const double value = ans.get<double>();
    if (ans.is_number_float() && std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15)
        return std::to_string(static_cast<int64_t>(value));
    return ans.dump();
}

}  // namespace

std::string gsm8k_text(const json & record, const std::string & where) {
    return string_field(record, "question", where, "gsm8k") + " " + string_field(record, "answer", where, "gsm8k");
}

// MAWPS has no worked solution, only the equation and the number. The text keeps the original's
// "question, one space, solution" shape and ends like LLM-Adapters' math answers, e.g.
// "A waiter had 22 customers ... how many tables did he have ? X=((22.0-14.0)/4.0) The answer is 2."
// `original_text` is used (identical to `segmented_text` in every record of trainset.json).
std::string mawps_text(const json & record, const std::string & where) {
    return string_field(record, "original_text", where, "mawps") + " " + string_field(record, "equation", where, "mawps") +
           " The answer is " + mawps_answer(field(record, "ans", where, "mawps"), where) + ".";
}

std::string math_data_text(const json & record, const std::string & where) {
    return string_field(record, "instruction", where, "math_data") + string_field(record, "input", where, "math_data") +
           string_field(record, "output", where, "math_data");
}

std::string mbpp_text(const json & record, const std::string & where) {
    const json & tests = field(record, "test_list", where, "mbpp");
    CT3_CHECK(tests.is_array() && !tests.empty() && tests[0].is_string(), ErrorKind::bad_format,
              "{}: field 'test_list' must be a non-empty array of strings (reader 'mbpp')", where);
    return "\"\"\"\n" + string_field(record, "text", where, "mbpp") + "\n" + tests[0].get<std::string>() + "\n\"\"\"\n";
}

std::string python_code_text(const json & record, const std::string & where) {
    return string_field(record, "code", where, "python_code");
}

std::string coqa_text(const json & record, const std::string & where) {
    const std::string & story = string_field(record, "story", where, "coqa");
    const std::vector<std::string> questions = coqa_turns(record, "questions", where);
    const std::vector<std::string> answers = coqa_turns(record, "answers", where);
    CT3_CHECK(!questions.empty(), ErrorKind::bad_format, "{}: the story has no questions (reader 'coqa')", where);
    CT3_CHECK(questions.size() == answers.size(), ErrorKind::bad_format,
              "{}: {} questions but {} answers; every turn needs one answer (reader 'coqa')", where, questions.size(),
              answers.size());
    std::string text = story + "\n\n";
    for (size_t i = 0; i < questions.size(); ++i) {
        text += "Q: " + questions[i] + "\n\n";
        text += i + 1 < questions.size() ? "A: " + answers[i] + "\n\n" : std::string("A:");
    }
    return text + " " + answers.back();
}

std::string metamathqa_text(const json & record, const std::string & where) {
    return string_field(record, "query", where, "metamathqa") + " " + string_field(record, "response", where, "metamathqa");
}

std::string orca_math_text(const json & record, const std::string & where) {
    return string_field(record, "question", where, "orca_math") + " " + string_field(record, "answer", where, "orca_math");
}

std::string math_50k_text(const json & record, const std::string & where) {
    return string_field(record, "instruction", where, "math_50k") + string_field(record, "input", where, "math_50k") +
           string_field(record, "output", where, "math_50k");
}

std::string the_stack_python_text(const json & record, const std::string & where) {
    return string_field(record, "content", where, "the_stack_python");
}

const std::vector<DatasetReader> & dataset_readers() {
    static const std::vector<DatasetReader> readers = {
        {"gsm8k", "gsm8k/train.jsonl", "{question, answer}", gsm8k_text},
        {"mawps", "llm_adapters/dataset/mawps/trainset.json", "{original_text, equation, ans}", mawps_text},
        {"math_data", "llm_adapters/math_data.json", "{instruction, input, output}", math_data_text},
        {"mbpp", "mbpp/mbpp_train.jsonl", "{text, test_list}", mbpp_text},
        {"python_code", "python_code/stdlib_functions.jsonl", "{code}", python_code_text},
        {"coqa", nullptr, "{story, questions: {input_text: [...]}, answers: {input_text: [...]}}", coqa_text},
        {"metamathqa", nullptr, "{query, response}", metamathqa_text},
        {"orca_math", nullptr, "{question, answer}", orca_math_text},
        {"math_50k", nullptr, "{instruction, input, output}", math_50k_text},
        {"the_stack_python", nullptr, "{content}", the_stack_python_text},
    };
    return readers;
}

const DatasetReader * find_dataset_reader(const std::string & name) {
    for (const auto & reader : dataset_readers())
        if (name == reader.name) return &reader;
    return nullptr;
}

}  // namespace ct3::kb
