// Durable file writes and whole-file reads, shared by every library (kb/ re-exports them as
// ct3::kb::..., the names its callers use).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace ct3 {

// Writes all `size` bytes to `fd` (retrying short writes and EINTR); throws io naming `path`.
void write_all(int fd, const void * data, size_t size, const std::filesystem::path & path);

// fsync of an existing file or directory.
void fsync_path(const std::filesystem::path & path);
// fsync of the directory holding `path` (makes a rename or creation of `path` durable).
void fsync_parent(const std::filesystem::path & path);

// Writes `bytes` to `path` durably and atomically: temp file, fsync, rename, fsync of the folder.
void write_file_atomic(const std::filesystem::path & path, std::string_view bytes);

// The whole file as a string; throws (not_found / io) naming `what` and the path.
std::string read_whole_file(const std::filesystem::path & path, const std::string & what);

}  // namespace ct3
