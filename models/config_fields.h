// Typed, optional fields of a model's config.json (Llama-family and TTT configs): a missing or null
// field gives the fallback, a present one of the wrong type throws invalid_argument naming `source`
// (the file), the field and the value found.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace ct3::config_fields {

// Present and not null.
bool has(const nlohmann::json & j, const char * key);
// An integer; integral floats (4096.0, as some exporters write sizes) are accepted, nothing fractional.
int64_t as_int(const nlohmann::json & v, const char * key, const std::string & source);
int64_t get_int(const nlohmann::json & j, const char * key, int64_t fallback, const std::string & source);
double get_double(const nlohmann::json & j, const char * key, double fallback, const std::string & source);  // finite
bool get_bool(const nlohmann::json & j, const char * key, bool fallback, const std::string & source);
std::string get_string(const nlohmann::json & j, const char * key, const std::string & fallback,
                       const std::string & source);

}  // namespace ct3::config_fields
