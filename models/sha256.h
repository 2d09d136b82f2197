// SHA-256 (FIPS 180-4) of files and byte strings, for manifests and for recognising known files.
// None of the project's libraries exposes a hash, so this small, standard implementation lives here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace ct3 {

class Sha256 {
public:
    Sha256();
    void update(const void * data, size_t size);
    void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
    std::string hex_digest();  // finalises; lower-case hex, 64 characters

private:
    void compress(const uint8_t * block);

    uint32_t state_[8];
    uint8_t buffer_[64];
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Streams the file; throws ct3::Error (io) naming it when it cannot be read.
std::string sha256_file(const std::filesystem::path & path);

}  // namespace ct3
