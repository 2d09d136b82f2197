// API-key authentication for the server.
//
// The key is read from a file (--api-key-file) so it never shows up in `ps` or shell history; one
// trailing newline (\n or \r\n) is stripped, as editors add one. Clients send it as
// `Authorization: Bearer KEY` or `X-API-Key: KEY`. A missing or wrong key gets 401 with the error
// envelope and `WWW-Authenticate: Bearer`. GET /health and GET /metrics stay open so that load
// balancers and Prometheus need no secret (they reveal no KB content).
//
// Comparison is constant-time: both strings are hashed with SHA-256 and the two digests compared
// with a loop that always visits every byte, so neither the key's length nor the position of the
// first wrong character leaks through the response time.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ct3::server {

// True when a == b; time depends on neither the contents nor the length of a and b.
bool constant_time_equal(std::string_view a, std::string_view b);

class ApiKey {
public:
    // Throws ct3::Error naming the file when it is unreadable or the key is empty.
    static ApiKey from_file(const std::filesystem::path & path);
    // Throws ct3::Error (invalid_argument) when the key is empty.
    explicit ApiKey(std::string key);

    // `authorization`: the Authorization header ("" when absent); `x_api_key`: the X-API-Key header.
    bool accepts(std::string_view authorization, std::string_view x_api_key) const;

    // "****abcd": for logs, never the key itself.
    std::string masked() const;

private:
    std::string key_;
};

}  // namespace ct3::server
