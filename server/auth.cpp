#include "server/auth.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "models/error.h"
#include "models/sha256.h"

namespace ct3::server {

bool constant_time_equal(std::string_view a, std::string_view b) {
    // Equal-length digests make the loop length independent of the inputs.
    const std::string da = sha256_hex(a);
    const std::string db = sha256_hex(b);
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < da.size(); ++i) diff = diff | static_cast<unsigned char>(da[i] ^ db[i]);
    return diff == 0;
}

ApiKey::ApiKey(std::string key) : key_(std::move(key)) {
    CT3_CHECK(!key_.empty(), ErrorKind::invalid_argument, "the API key is empty");
}

ApiKey ApiKey::from_file(const std::filesystem::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in, ErrorKind::not_found, "cannot read the API key file '{}' (--api-key-file)", path.string());
    std::ostringstream buffer;
    buffer << in.rdbuf();
    std::string key = buffer.str();
    if (!key.empty() && key.back() == '\n') key.pop_back();
    if (!key.empty() && key.back() == '\r') key.pop_back();
    if (key.empty())
        fail_hint(ErrorKind::invalid_argument, "write the key on the file's first line",
                  "the API key file '{}' (--api-key-file) is empty", path.string());
    for (unsigned char c : key)
        CT3_CHECK(c >= 0x21 && c <= 0x7e, ErrorKind::invalid_argument,
                  "the API key in '{}' (--api-key-file) must be one line of printable ASCII without spaces",
                  path.string());
    return ApiKey(std::move(key));
}

bool ApiKey::accepts(std::string_view authorization, std::string_view x_api_key) const {
    std::string_view presented = x_api_key;
    if (!authorization.empty()) {
        // "Bearer" is case-insensitive (RFC 7235 auth-scheme); anything else is not our scheme.
        constexpr std::string_view scheme = "bearer ";
        if (authorization.size() < scheme.size()) return false;
        for (size_t i = 0; i < scheme.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return false;
        presented = authorization.substr(scheme.size());
        while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
    }
    if (presented.empty()) return false;
    return constant_time_equal(presented, key_);
}

std::string ApiKey::masked() const {
    return key_.size() <= 8 ? std::string("****") : "****" + key_.substr(key_.size() - 4);
}

}  // namespace ct3::server
