// JSON parsing for untrusted files: nlohmann's parser silently keeps the last of duplicate keys and
// accepts any nesting depth; this wrapper rejects both and turns parse errors into ct3::Error.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ct3 {

// Parses [begin, end) as one JSON value. Throws ct3::Error(bad_format) naming `what` (a file name,
// "foo.safetensors header", ...) on invalid JSON or UTF-8, a duplicate key in any object, or
// nesting deeper than `max_depth`.
nlohmann::json parse_strict_json(const char * begin, const char * end, const std::string & what, int max_depth = 64);

inline nlohmann::json parse_strict_json(const std::string & text, const std::string & what, int max_depth = 64) {
    return parse_strict_json(text.data(), text.data() + text.size(), what, max_depth);
}

}  // namespace ct3
