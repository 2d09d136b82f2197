// Dataset readers: each source file becomes a stream of KB texts, built with the original CT3
// templates (ct3_original.md §1.2) or a user template.
//
// A --datasets token is one of
//   a known name       gsm8k, mawps, math_data, mbpp, python_code (files under the data root), or
//                      coqa, metamathqa, orca_math, math_50k, the_stack_python (user-supplied: the
//                      token must be NAME=PATH)
//   NAME=PATH          a known reader on another file
//   PATH               a JSON array or JSONL file read with --template (required then)
// Test splits are refused by sha256 (the evaluation files of ../shared/data) and by file name
// (test.json, *_test.jsonl, testset.json, HumanEval*, ...): a KB must never contain evaluation data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace ct3::kb {

struct Record {
    int64_t row = -1;  // 0-based record number in the source file
    std::string text;
};

struct DatasetSpec {
    std::string name;             // dataset id stored with every entry ("gsm8k", or the file stem)
    std::string reader;           // reader id ("gsm8k", "coqa", ..., "template")
    std::filesystem::path path;   // source file
    std::string text_template;    // "template" reader: e.g. "{question} {answer}"
    std::string sha256;           // of `path`, when resolve_dataset hashed it (files < 64 MiB), else ""
};

// Known dataset names that have a file under the data root, in the order `--datasets all` uses
// (the user-supplied ones, which need NAME=PATH, are not listed).
std::vector<std::string> known_datasets();
// known_datasets() whose file exists under `data_root` (what `--datasets all` expands to).
std::vector<std::string> available_datasets(const std::filesystem::path & data_root);
// Resolves a --datasets token (see above). Throws ct3::Error naming the token when it is unknown,
// the file is missing, or the file is a known test split.
DatasetSpec resolve_dataset(const std::string & token, const std::filesystem::path & data_root,
                            const std::string & user_template = {});
// Throws ct3::Error (invalid_argument) when `path` is a known evaluation file (by name or hash).
// Returns the sha256 it computed (files under 64 MiB; "" otherwise) so callers need not hash again.
std::string refuse_test_split(const std::filesystem::path & path);

// Streams the records of a dataset in source order. `limit` > 0 stops after that many records.
// Throws ct3::Error naming file, line/record and field on malformed input.
void read_dataset(const DatasetSpec & spec, const std::function<void(Record &&)> & sink, int64_t limit = 0);

}  // namespace ct3::kb
