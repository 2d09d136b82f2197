#include "kb/text_template.h"

#include <utility>

#include "models/close_names.h"
#include "models/error.h"

namespace ct3::kb {

namespace {

using json = nlohmann::json;

const char * type_name(const json & value) {
    switch (value.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "an object";
        case json::value_t::array: return "an array";
        case json::value_t::string: return "a string";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::binary: return "binary";
        case json::value_t::discarded: return "discarded";
        default: return "a number";
    }
}

std::vector<std::string> keys_of(const json & object) {
    std::vector<std::string> keys;
    for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
    return keys;
}

std::string list_keys(const json & object) {
    std::string out;
    for (const auto & key : keys_of(object)) out += (out.empty() ? "'" : ", '") + key + "'";
    return out.empty() ? "none" : out;
}

}  // namespace

TextTemplate::TextTemplate(std::string source) : source_(std::move(source)) {
    auto bad = [&](size_t pos, const char * what) {
        fail_hint(ErrorKind::invalid_argument, "write fields as {name}, {a.b} or {list[0]}, literal braces as {{ and }}",
                  "template '{}': {} at character {}", source_, what, pos);
    };
    Piece piece;
    size_t i = 0;
    while (i < source_.size()) {
        const char c = source_[i];
        if (c == '}') {
            if (i + 1 < source_.size() && source_[i + 1] == '}') {
                piece.literal += '}';
                i += 2;
                continue;
            }
            bad(i, "lone '}'");
        }
        if (c != '{') {
            piece.literal += c;
            ++i;
            continue;
        }
        if (i + 1 < source_.size() && source_[i + 1] == '{') {
            piece.literal += '{';
            i += 2;
            continue;
        }
        const size_t close = source_.find('}', i + 1);
        if (close == std::string::npos) bad(i, "unclosed '{'");
        piece.field = source_.substr(i + 1, close - i - 1);
        if (piece.field.empty()) bad(i, "empty field '{}'");

        // field := name ('[' digits ']')* ('.' name ('[' digits ']')*)*
        const std::string & f = piece.field;
        size_t j = 0;
        while (true) {
            const size_t name_start = j;
            while (j < f.size() && f[j] != '.' && f[j] != '[' && f[j] != ']' && f[j] != '{') ++j;
            if (j == name_start) bad(i + 1 + j, "empty or malformed field name");
            piece.steps.push_back({f.substr(name_start, j - name_start), -1});
            while (j < f.size() && f[j] == '[') {
                const size_t digits = ++j;
                while (j < f.size() && f[j] >= '0' && f[j] <= '9') ++j;
                if (j == digits || j >= f.size() || f[j] != ']' || j - digits > 9)
                    bad(i + 1 + j, "array index must be [N] with N a non-negative integer");
                piece.steps.push_back({std::string(), std::stoll(f.substr(digits, j - digits))});
                ++j;
            }
            if (j == f.size()) break;
            if (f[j] != '.') bad(i + 1 + j, "unexpected character in field");
            ++j;
        }
        pieces_.push_back(std::move(piece));
        piece = Piece();
        i = close + 1;
    }
    if (!piece.literal.empty() || pieces_.empty()) pieces_.push_back(std::move(piece));
}

std::vector<std::string> TextTemplate::fields() const {
    std::vector<std::string> out;
    for (const auto & piece : pieces_)
        if (!piece.field.empty()) out.push_back(piece.field);
    return out;
}

std::string TextTemplate::render(const json & record, const std::string & where) const {
    CT3_CHECK(record.is_object(), ErrorKind::bad_format, "{}: record is {}, expected a JSON object (template '{}')",
              where, type_name(record), source_);
    std::string text;
    for (const auto & piece : pieces_) {
        text += piece.literal;
        if (piece.field.empty()) continue;
        const json * value = &record;
        for (const auto & step : piece.steps) {
            if (!step.key.empty()) {
                CT3_CHECK(value->is_object(), ErrorKind::bad_format,
                          "{}: template '{}' field '{}': '{}' is applied to {}, not an object", where, source_,
                          piece.field, step.key, type_name(*value));
                const auto it = value->find(step.key);
                if (it == value->end()) {
                    fail(ErrorKind::bad_format, "{}: template '{}' field '{}': no key '{}' (the object has {}){}", where,
                         source_, piece.field, step.key, list_keys(*value),
                         describe_close_names(step.key, keys_of(*value)));
                }
                value = &*it;
            } else {
                CT3_CHECK(value->is_array(), ErrorKind::bad_format,
                          "{}: template '{}' field '{}': index [{}] is applied to {}, not an array", where, source_,
                          piece.field, step.index, type_name(*value));
                CT3_CHECK(step.index < static_cast<int64_t>(value->size()), ErrorKind::bad_format,
                          "{}: template '{}' field '{}': index [{}] is out of range (the array has {} elements)", where,
                          source_, piece.field, step.index, value->size());
                value = &(*value)[static_cast<size_t>(step.index)];
            }
        }
        if (value->is_string()) {
            text += value->get_ref<const std::string &>();
        } else if (value->is_number() || value->is_boolean()) {
            text += value->dump();
        } else {
            fail_hint(ErrorKind::bad_format, "pick a string, number or boolean: {a.b} for a nested field, {a[0]} for an element",
                      "{}: template '{}' field '{}' is {}, which cannot be written into a text", where, source_,
                      piece.field, type_name(*value));
        }
    }
    return text;
}

}  // namespace ct3::kb
