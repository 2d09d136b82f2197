#include "kb/kb_texts.h"

#include <cerrno>
#include <cstring>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::kb {

TextsWriter::TextsWriter(const fs::path & dir) : jsonl_path_(dir / kTextsFile), idx_path_(dir / kTextsIndexFile) {
    out_ = std::fopen(jsonl_path_.c_str(), "wb");
    CT3_CHECK(out_ != nullptr, ErrorKind::io, "cannot create '{}': {}", jsonl_path_.string(), std::strerror(errno));
    std::setvbuf(out_, nullptr, _IOFBF, 1 << 20);
}

TextsWriter::~TextsWriter() {
    if (out_ != nullptr) std::fclose(out_);
}

void TextsWriter::add(const std::string & dataset, int64_t row, const std::string & text) {
    const int64_t id = int64_t(offsets_.size()) - 1;
    // ordered_json keeps the documented key order {"id", "dataset", "row", "text"}.
    nlohmann::ordered_json line = {{"id", id}, {"dataset", dataset}, {"row", row}, {"text", text}};
    std::string bytes;
    try {
        bytes = line.dump();
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "dataset '{}' row {}: the text is not valid UTF-8 ({})", dataset, row, e.what());
    }
    bytes.push_back('\n');
    CT3_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), out_) == bytes.size(), ErrorKind::io,
              "write to '{}' failed: {}", jsonl_path_.string(), std::strerror(errno));
    offsets_.push_back(offsets_.back() + bytes.size());
}

void TextsWriter::finish() {
    CT3_CHECK(std::fflush(out_) == 0 && ::fsync(fileno(out_)) == 0, ErrorKind::io, "cannot flush '{}': {}",
              jsonl_path_.string(), std::strerror(errno));
    const int rc = std::fclose(out_);
    out_ = nullptr;
    CT3_CHECK(rc == 0, ErrorKind::io, "cannot close '{}': {}", jsonl_path_.string(), std::strerror(errno));
    std::string idx(offsets_.size() * 8, '\0');
    for (size_t i = 0; i < offsets_.size(); ++i)
        for (int b = 0; b < 8; ++b) idx[i * 8 + size_t(b)] = char((offsets_[i] >> (8 * b)) & 0xff);
    {
        AppendFile file(idx_path_, 0);
        file.append(idx.data(), idx.size());
        file.sync();
        file.close();
    }
}

Entry parse_text_line(std::string_view line, int64_t id, const fs::path & file) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line.begin(), line.end());
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "'{}' line {}: not valid JSON ({})", file.string(), id + 1, e.what());
    }
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "'{}' line {}: expected a JSON object", file.string(), id + 1);
    auto field = [&](const char * name, bool want_string) -> const nlohmann::json & {
        auto it = j.find(name);
        CT3_CHECK(it != j.end() && (want_string ? it->is_string() : it->is_number_integer()), ErrorKind::bad_format,
                  "'{}' line {}: field '{}' is missing or not {}", file.string(), id + 1, name,
                  want_string ? "a string" : "an integer");
        return *it;
    };
    Entry entry;
    entry.id = field("id", false).get<int64_t>();
    CT3_CHECK(entry.id == id, ErrorKind::bad_format, "'{}' line {}: field 'id' is {} (expected {})", file.string(),
              id + 1, entry.id, id);
    entry.dataset = field("dataset", true).get<std::string>();
    entry.row = field("row", false).get<int64_t>();
    entry.text = field("text", true).get<std::string>();
    return entry;
}

}  // namespace ct3::kb
