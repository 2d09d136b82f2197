// texts.jsonl and texts.idx of a KB folder (format in knowledge_base.h): the writer used by the
// builder and the parser of one line used by KnowledgeBase::entry().
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kb/knowledge_base.h"

namespace ct3::kb {

inline constexpr const char * kTextsFile = "texts.jsonl";
inline constexpr const char * kTextsIndexFile = "texts.idx";

// Writes texts.jsonl and texts.idx into a folder, one entry at a time, in id order.
class TextsWriter {
public:
    explicit TextsWriter(const std::filesystem::path & dir);
    ~TextsWriter();
    TextsWriter(const TextsWriter &) = delete;
    TextsWriter & operator=(const TextsWriter &) = delete;

    // Entry ids are implicit: the n-th add() is entry n.
    void add(const std::string & dataset, int64_t row, const std::string & text);
    // Writes texts.idx, flushes and fsyncs both files.
    void finish();

private:
    std::filesystem::path jsonl_path_;
    std::filesystem::path idx_path_;
    std::FILE * out_ = nullptr;
    std::vector<uint64_t> offsets_{0};
};

// Parses one line of texts.jsonl (without its newline). Throws ct3::Error (bad_format) naming
// `file`, the line number (id + 1) and the field when the line is not the entry `id`.
Entry parse_text_line(std::string_view line, int64_t id, const std::filesystem::path & file);

}  // namespace ct3::kb
