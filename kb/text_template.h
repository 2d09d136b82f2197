// `{field}` text templates: how a record of a user-supplied JSON/JSONL file becomes one KB text
// (`--template '{question} {answer}'`).
//
//   {name}         a top-level field          {a.b}       a field of a nested object
//   {list[0]}      an element of an array     {a.b[2].c}  any combination
//   {{ and }}      literal braces
// Strings are inserted as they are; numbers and booleans as JSON writes them (2, 2.5, true). Null,
// arrays and objects are errors: silently writing "null" or a JSON dump into a training text would
// poison the KB. The template is parsed once; render() only walks the pre-split field paths.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ct3::kb {

class TextTemplate {
public:
    // Throws ct3::Error(invalid_argument) quoting the template on an unclosed '{', a lone '}', or an
    // empty or malformed field such as {}, {a..b}, {a[x]}.
    explicit TextTemplate(std::string source);

    // Renders one record. `where` names the file and record ("data.jsonl line 3 (record 2)"); errors
    // (record not an object, missing field, index out of range, null/array/object value) are
    // ct3::Error(bad_format) naming the template, the field and `where`.
    std::string render(const nlohmann::json & record, const std::string & where) const;

    const std::string & source() const { return source_; }
    std::vector<std::string> fields() const;  // the field expressions in order, e.g. {"question", "a.b[0]"}

private:
    struct Step {
        std::string key;     // object member, or empty for an array index
        int64_t index = -1;  // array index when key is empty
    };
    struct Piece {
        std::string literal;      // text before the field (braces already unescaped)
        std::string field;        // the field expression, empty for a trailing literal
        std::vector<Step> steps;  // the parsed path of `field`
    };

    std::string source_;
    std::vector<Piece> pieces_;
};

}  // namespace ct3::kb
