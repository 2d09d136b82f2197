#include "models/strict_json.h"

#include <set>
#include <vector>

#include "models/error.h"

namespace ct3 {

nlohmann::json parse_strict_json(const char * begin, const char * end, const std::string & what, int max_depth) {
    using json = nlohmann::json;
    // One key set per open object; arrays need no entry because they have no keys.
    std::vector<std::set<std::string>> open_objects;
    int depth = 0;
    json::parser_callback_t check = [&](int, json::parse_event_t event, json & parsed) {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                CT3_CHECK(++depth <= max_depth, ErrorKind::bad_format, "{}: JSON nested deeper than {} levels", what,
                          max_depth);
                if (event == json::parse_event_t::object_start) open_objects.emplace_back();
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                --depth;
                if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
                break;
            case json::parse_event_t::key:
                if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second) {
                    fail(ErrorKind::bad_format, "{}: duplicate JSON key '{}'", what, parsed.get<std::string>());
                }
                break;
            case json::parse_event_t::value:
                break;
        }
        return true;
    };
    try {
        return json::parse(begin, end, check);
    } catch (const json::exception & e) {
        // nlohmann quotes the offending input verbatim; escape it so that messages stay printable
        // (they end up in logs and JSON error responses).
        std::string message;
        for (unsigned char c : std::string(e.what())) {
            message += (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
        }
        fail(ErrorKind::bad_format, "{}: not valid JSON ({})", what, message);
    }
}

}  // namespace ct3
