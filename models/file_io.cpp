#include "models/file_io.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

[[noreturn]] void fail_errno(const std::string & call, const fs::path & path) {
    fail(ErrorKind::io, "{} '{}' failed: {}", call, path.string(), std::strerror(errno));
}

}  // namespace

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

}  // namespace ct3
