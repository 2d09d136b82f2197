// Streams the records of a dataset file one at a time: a JSON array (`[{...}, {...}]`) or JSON Lines
// (one value per line). Files such as MetaMathQA-395K.json are hundreds of MB, so the array is split
// into its elements by a small byte scanner and each element is parsed on its own; memory stays at
// one record.
//
// Format: a `.jsonl` file is always JSON Lines; otherwise the first non-blank byte decides ('[' = JSON
// array, anything else = JSON Lines, which also covers `to_json(lines=True)` exports named `.json`).
// JSON Lines: blank lines are skipped and not counted as records, so `row` counts records while
// `line` counts physical lines. Every record is parsed with parse_strict_json (duplicate keys and
// absurd nesting are errors).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace ct3::kb {

struct JsonRecord {
    int64_t row = 0;     // 0-based record number
    int64_t line = 0;    // JSON Lines: 1-based line number; JSON array: 0
    int64_t offset = 0;  // byte offset of the record's first byte in the file
    nlohmann::json value;
};

// Calls `sink` for every record in file order until it returns false. Throws ct3::Error: io when the
// file cannot be read, bad_format naming the file and the line (JSON Lines) or byte offset (JSON
// array) when the content is not valid JSON.
void for_each_json_record(const std::filesystem::path & path, const std::function<bool(JsonRecord &&)> & sink);

// "data/train.jsonl line 12 (record 11)" or "data/math.json record 11 (byte offset 5012)": where a
// record came from, for error messages.
std::string record_location(const std::filesystem::path & path, const JsonRecord & record);

}  // namespace ct3::kb
