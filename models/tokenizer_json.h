// Checked access to Hugging Face tokenizer.json nodes. nlohmann's own exceptions name neither the file nor
// the JSON path, so every missing field or wrong type goes through these helpers and becomes a ct3::Error
// such as "tokenizer.json: model.merges[3] is a number (expected a string or a [left, right] pair)".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "models/error.h"

namespace ct3 {

// Where a node sits: the file it came from and its JSON path ("pre_tokenizer.pretokenizers[1]").
struct JsonWhere {
    std::string file;
    std::string path;

    JsonWhere field(const std::string & key) const { return {file, path.empty() ? key : path + "." + key}; }
    JsonWhere index(size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
};

// "{file}: {path}" — the prefix of every message about a node.
inline std::string json_at(const JsonWhere & where) { return where.file + ": " + where.path; }

// obj[key], which must exist (and obj must be an object).
inline const nlohmann::json & json_require(const nlohmann::json & obj, const std::string & key,
                                           const JsonWhere & where) {
    CT3_CHECK(obj.is_object(), ErrorKind::bad_format, "{} is a {} (expected an object)", json_at(where),
              obj.type_name());
    auto it = obj.find(key);
    CT3_CHECK(it != obj.end(), ErrorKind::bad_format, "{} is missing (expected in a tokenizer.json)",
              json_at(where.field(key)));
    return *it;
}

inline std::string json_string(const nlohmann::json & node, const JsonWhere & where) {
    CT3_CHECK(node.is_string(), ErrorKind::bad_format, "{} is a {} (expected a string)", json_at(where),
              node.type_name());
    return node.get<std::string>();
}

// obj[key] as a bool; `fallback` when the key is absent or null.
inline bool json_bool_or(const nlohmann::json & obj, const std::string & key, bool fallback, const JsonWhere & where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    CT3_CHECK(it->is_boolean(), ErrorKind::bad_format, "{} is a {} (expected true or false)",
              json_at(where.field(key)), it->type_name());
    return it->get<bool>();
}

// A token id: an integer in [0, 2^24) (larger ids would make the id tables absurdly big).
inline int32_t json_token_id(const nlohmann::json & node, const JsonWhere & where) {
    CT3_CHECK(node.is_number_integer(), ErrorKind::bad_format, "{} is a {} (expected an integer token id)",
              json_at(where), node.type_name());
    const int64_t id = node.get<int64_t>();
    CT3_CHECK(id >= 0 && id < (int64_t(1) << 24), ErrorKind::bad_format, "{} is {} (expected a token id in [0, 2^24))",
              json_at(where), id);
    return static_cast<int32_t>(id);
}

// obj["type"] as a string (the discriminator of every tokenizer.json component).
inline std::string json_type(const nlohmann::json & obj, const JsonWhere & where) {
    return json_string(json_require(obj, "type", where), where.field("type"));
}

}  // namespace ct3
