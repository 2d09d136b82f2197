#include "kb/json_records.h"

#include <fstream>
#include <vector>

#include "models/error.h"
#include "models/strict_json.h"

namespace ct3::kb {

namespace {

using json = nlohmann::json;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string printable(char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", u);
}

std::ifstream open_binary(const std::filesystem::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in, ErrorKind::io, "cannot open dataset file '{}'", path.string());
    return in;
}

// The first byte that is not blank (after a UTF-8 byte-order mark), or '\0' for an empty file.
char first_significant_byte(const std::filesystem::path & path) {
    std::ifstream in = open_binary(path);
    static const char bom[] = "\xEF\xBB\xBF";
    char c = 0;
    int64_t position = 0;
    while (in.get(c)) {
        const bool bom_byte = position < 3 && c == bom[position];
        ++position;
        if (bom_byte || is_blank(c)) continue;
        return c;
    }
    return '\0';
}

void read_json_lines(const std::filesystem::path & path, const std::function<bool(JsonRecord &&)> & sink) {
    std::ifstream in = open_binary(path);
    std::string line;
    int64_t line_number = 0, row = 0, offset = 0;
    while (std::getline(in, line)) {
        ++line_number;
        const int64_t line_offset = offset;
        offset += static_cast<int64_t>(line.size()) + 1;
        if (line_number == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are not records

        JsonRecord record;
        record.row = row++;
        record.line = line_number;
        record.offset = line_offset;
        record.value = parse_strict_json(line, record_location(path, record));
        if (!sink(std::move(record))) return;
    }
    CT3_CHECK(!in.bad(), ErrorKind::io, "error reading dataset file '{}' after line {}", path.string(), line_number);
}

// Splits the top-level array into element byte ranges (tracking strings, escapes and nesting) and
// parses each element separately; the parser then checks each element completely.
void read_json_array(const std::filesystem::path & path, const std::function<bool(JsonRecord &&)> & sink) {
    enum class State { before_array, first_value, next_value, in_value, after_value, after_array };
    State state = State::before_array;
    std::string value;
    int depth = 0;
    bool in_string = false, escaped = false, scalar = false;
    int64_t row = 0, value_start = 0, offset = 0;
    const std::string file = path.string();

    // Parses the collected element; false when the sink wants no more records.
    auto emit = [&]() {
        JsonRecord record;
        record.row = row++;
        record.offset = value_start;
        record.value = parse_strict_json(value, record_location(path, record));
        value.clear();
        return sink(std::move(record));
    };

    std::ifstream in = open_binary(path);
    std::vector<char> buffer(size_t(1) << 20);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        const int64_t n = in.gcount();
        if (n <= 0) break;
        int64_t i = 0;
        if (offset == 0 && n >= 3 && buffer[0] == '\xEF' && buffer[1] == '\xBB' && buffer[2] == '\xBF') i = 3;
        for (; i < n; ++i) {
            const char c = buffer[static_cast<size_t>(i)];
            const int64_t pos = offset + i;
            if (state == State::in_value) {
                if (scalar) {  // numbers, true, false, null end at a delimiter that belongs to the array
                    if (is_blank(c) || c == ',' || c == ']') {
                        if (!emit()) return;
                        state = c == ',' ? State::next_value : c == ']' ? State::after_array : State::after_value;
                    } else {
                        value.push_back(c);
                    }
                    continue;
                }
                value.push_back(c);
                if (in_string) {
                    if (escaped) escaped = false;
                    else if (c == '\\') escaped = true;
                    else if (c == '"') in_string = false;
                    if (!in_string && depth == 0) {  // a top-level string element
                        if (!emit()) return;
                        state = State::after_value;
                    }
                    continue;
                }
                if (c == '"') in_string = true;
                else if (c == '{' || c == '[') ++depth;
                else if ((c == '}' || c == ']') && --depth == 0) {
                    if (!emit()) return;
                    state = State::after_value;
                }
                continue;
            }
            if (is_blank(c)) continue;
            switch (state) {
                case State::before_array:
                    CT3_CHECK(c == '[', ErrorKind::bad_format,
                              "{}: expected a JSON array ('[') at byte offset {}, found '{}'", file, pos, printable(c));
                    state = State::first_value;
                    break;
                case State::first_value:
                case State::next_value:
                    if (c == ']') {
                        CT3_CHECK(state == State::first_value, ErrorKind::bad_format,
                                  "{}: trailing ',' before ']' at byte offset {}", file, pos);
                        state = State::after_array;
                        break;
                    }
                    value.assign(1, c);
                    value_start = pos;
                    depth = (c == '{' || c == '[') ? 1 : 0;
                    in_string = c == '"';
                    escaped = false;
                    scalar = depth == 0 && !in_string;
                    state = State::in_value;
                    break;
                case State::after_value:
                    if (c == ',') state = State::next_value;
                    else if (c == ']') state = State::after_array;
                    else
                        fail(ErrorKind::bad_format, "{}: expected ',' or ']' after record {} at byte offset {}, found '{}'",
                             file, row - 1, pos, printable(c));
                    break;
                case State::after_array:
                    fail(ErrorKind::bad_format, "{}: unexpected '{}' after the closing ']' at byte offset {}", file,
                         printable(c), pos);
                case State::in_value:
                    break;
            }
        }
        offset += n;
    }
    CT3_CHECK(!in.bad(), ErrorKind::io, "error reading dataset file '{}' at byte offset {}", file, offset);
    if (state == State::after_array) return;
    if (state == State::in_value)
        fail(ErrorKind::bad_format, "{}: unexpected end of file inside record {} (starts at byte offset {})", file, row,
             value_start);
    fail(ErrorKind::bad_format, "{}: unexpected end of file: the JSON array is not closed with ']' (byte offset {})",
         file, offset);
}

}  // namespace

std::string record_location(const std::filesystem::path & path, const JsonRecord & record) {
    if (record.line > 0) return fmt::format("{} line {} (record {})", path.string(), record.line, record.row);
    return fmt::format("{} record {} (byte offset {})", path.string(), record.row, record.offset);
}

void for_each_json_record(const std::filesystem::path & path, const std::function<bool(JsonRecord &&)> & sink) {
    std::error_code ec;
    CT3_CHECK(std::filesystem::is_regular_file(path, ec), ErrorKind::not_found, "dataset file '{}' does not exist",
              path.string());
    if (path.extension() != ".jsonl" && first_significant_byte(path) == '[') {
        read_json_array(path, sink);
    } else {
        read_json_lines(path, sink);
    }
}

}  // namespace ct3::kb
