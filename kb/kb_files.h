// File helpers of the KB folder: read-only mmaps, durable writes (fsync of file and directory),
// atomic replacement, and an exclusive lock on a build folder.
//
// A KB is written so that a crash at any moment leaves either the old state or the new one: data is
// fsynced before the file that points at it (progress.json, manifest.json) is atomically renamed
// into place, and the directory is fsynced after every rename. Errors are ct3::Error (io) naming
// the file and the failed system call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "models/file_io.h"

namespace ct3::kb {

// A whole file mapped read-only. An empty file maps to (nullptr, 0). Movable, not copyable.
class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::filesystem::path & path);
    ~MappedFile();
    MappedFile(MappedFile && other) noexcept;
    MappedFile & operator=(MappedFile && other) noexcept;
    MappedFile(const MappedFile &) = delete;
    MappedFile & operator=(const MappedFile &) = delete;

    const uint8_t * data() const { return data_; }
    size_t size() const { return size_; }
    const std::filesystem::path & path() const { return path_; }

private:
    void release();

    std::filesystem::path path_;
    const uint8_t * data_ = nullptr;
    size_t size_ = 0;
};

// Durable writes and whole-file reads (models/file_io.h), under the names kb's callers use.
using ct3::fsync_parent;
using ct3::fsync_path;
using ct3::read_whole_file;
using ct3::write_file_atomic;

// An append-only binary file (embeddings.f32 of a build in progress).
class AppendFile {
public:
    // Opens (creating) `path` and truncates it to `keep_bytes` (a kill may leave a partial tail).
    AppendFile(const std::filesystem::path & path, uint64_t keep_bytes);
    ~AppendFile();
    AppendFile(const AppendFile &) = delete;
    AppendFile & operator=(const AppendFile &) = delete;

    void append(const void * data, size_t size);
    void sync();  // fsync: everything appended so far is durable
    void close();

private:
    std::filesystem::path path_;
    int fd_ = -1;
};

// An exclusive advisory lock (flock) on a directory, held for the object's lifetime, so that two
// builds never write into the same partial folder. Throws (unavailable) when someone else holds it.
class DirLock {
public:
    explicit DirLock(const std::filesystem::path & dir);
    ~DirLock();
    DirLock(const DirLock &) = delete;
    DirLock & operator=(const DirLock &) = delete;

private:
    int fd_ = -1;
};

}  // namespace ct3::kb
