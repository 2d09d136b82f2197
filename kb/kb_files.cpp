#include "kb/kb_files.h"

#include <atomic>
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

void write_all(int fd, const void * data, size_t size, const fs::path & path) {
    const auto * p = static_cast<const char *>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno("write", path);
        }
        p += n;
        size -= size_t(n);
    }
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

void fsync_path(const fs::path & path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_errno("open (for fsync)", path);
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    errno = saved;
    if (rc != 0) fail_errno("fsync", path);
}

void fsync_parent(const fs::path & path) {
    fs::path parent = fs::absolute(path).parent_path();
    fsync_path(parent.empty() ? fs::path(".") : parent);
}

void write_file_atomic(const fs::path & path, std::string_view bytes) {
    // A temp name of this process and call: several writers of one file (ct3-eval shards writing
    // a shared report) each rename a complete file, and the last one wins.
    static std::atomic<uint64_t> counter{0};
    fs::path tmp = path;
    tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_errno("open", tmp);
    try {
        write_all(fd, bytes.data(), bytes.size(), tmp);
        if (::fsync(fd) != 0) fail_errno("fsync", tmp);
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        fail_errno("close", tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        ::unlink(tmp.c_str());
        fail_errno("rename to '" + path.string() + "' of", tmp);
    }
    fsync_parent(path);
}

std::string read_whole_file(const fs::path & path, const std::string & what) {
    std::error_code ec;
    CT3_CHECK(fs::is_regular_file(path, ec), ErrorKind::not_found, "{} '{}' does not exist", what, path.string());
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open {} '{}'", what, path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    CT3_CHECK(!in.bad(), ErrorKind::io, "cannot read {} '{}'", what, path.string());
    return ss.str();
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

void AppendFile::append(const void * data, size_t size) { write_all(fd_, data, size, path_); }

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
