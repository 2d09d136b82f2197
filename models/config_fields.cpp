#include "models/config_fields.h"

#include <cmath>

#include "models/error.h"

using nlohmann::json;

namespace ct3::config_fields {

bool has(const json & j, const char * key) { return j.contains(key) && !j.at(key).is_null(); }

int64_t as_int(const json & v, const char * key, const std::string & source) {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    }
    fail(ErrorKind::invalid_argument, "{}: field '{}' must be an integer (got {})", source, key, v.dump());
}

int64_t get_int(const json & j, const char * key, int64_t fallback, const std::string & source) {
    return has(j, key) ? as_int(j.at(key), key, source) : fallback;
}

double get_double(const json & j, const char * key, double fallback, const std::string & source) {
    if (!has(j, key)) return fallback;
    const json & v = j.at(key);
    CT3_CHECK(v.is_number() && std::isfinite(v.get<double>()), ErrorKind::invalid_argument,
              "{}: field '{}' must be a finite number (got {})", source, key, v.dump());
    return v.get<double>();
}

bool get_bool(const json & j, const char * key, bool fallback, const std::string & source) {
    if (!has(j, key)) return fallback;
    CT3_CHECK(j.at(key).is_boolean(), ErrorKind::invalid_argument, "{}: field '{}' must be true or false (got {})",
              source, key, j.at(key).dump());
    return j.at(key).get<bool>();
}

std::string get_string(const json & j, const char * key, const std::string & fallback, const std::string & source) {
    if (!has(j, key)) return fallback;
    CT3_CHECK(j.at(key).is_string(), ErrorKind::invalid_argument, "{}: field '{}' must be a string (got {})", source,
              key, j.at(key).dump());
    return j.at(key).get<std::string>();
}

}  // namespace ct3::config_fields
