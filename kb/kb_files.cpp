#include "kb/kb_files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::kb {

namespace {

[[noreturn]] void fail_errno(const std::string & call, const fs::path & path) {
    fail(ErrorKind::io, "{} '{}' failed: {}", call, path.string(), std::strerror(errno));
}

}  // namespace

MappedFile::MappedFile(const fs::path & path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) fail(ErrorKind::not_found, "file '{}' does not exist", path.string());
        fail_errno("open", path);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        fail_errno("fstat", path);
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
        void * p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            const int saved = errno;
            ::close(fd);
            errno = saved;
            fail_errno("mmap", path);
        }
        data_ = static_cast<const uint8_t *>(p);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile && other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
}

MappedFile & MappedFile::operator=(MappedFile && other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        data_ = other.data_;
        size_ = other.size_;
        other.data_ = nullptr;
        other.size_ = 0;
    }
    return *this;
}

void MappedFile::release() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t *>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

AppendFile::AppendFile(const fs::path & path, uint64_t keep_bytes) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_errno("open", path);
    if (::ftruncate(fd_, off_t(keep_bytes)) != 0 || ::lseek(fd_, off_t(keep_bytes), SEEK_SET) < 0) {
        const int saved = errno;
        ::close(fd_);
        fd_ = -1;
        errno = saved;
        fail_errno("truncate", path);
    }
}

AppendFile::~AppendFile() {
    if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(const void * data, size_t size) { ct3::write_all(fd_, data, size, path_); }

void AppendFile::sync() {
    if (::fsync(fd_) != 0) fail_errno("fsync", path_);
}

void AppendFile::close() {
    if (fd_ < 0) return;
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail_errno("close", path_);
}

DirLock::DirLock(const fs::path & dir) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) fail_errno("open", dir);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int saved = errno;
        ::close(fd_);
        fd_ = -1;
        if (saved == EWOULDBLOCK)
            fail(ErrorKind::unavailable, "'{}' is locked by another ct3-build-kb process (wait for it to finish)",
                 dir.string());
        errno = saved;
        fail_errno("flock", dir);
    }
}

DirLock::~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

}  // namespace ct3::kb
