// ct3::Error — the one exception type of the project.
//
// Every user-facing failure (bad file, bad flag, bad request) throws ct3::Error with a message that
// names the file, field or parameter, says what was expected, and where we can guess the cause,
// adds a hint. Programs catch it in main() and print it; HTTP handlers map `kind` to a status.
// Internal invariants use CT3_ASSERT, which also throws (never aborts a server) but is marked
// internal so that it reads as a bug report.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace ct3 {

enum class ErrorKind {
    invalid_argument,  // a flag, config field or request parameter is out of range or malformed
    not_found,         // a file, tensor, token or entry does not exist
    bad_format,        // a file exists but its content is corrupt or not the expected format
    unsupported,       // valid input that this build does not handle (architecture, dtype, ...)
    io,                // the operating system refused (open, read, write, mmap, rename)
    unavailable,       // a service is not ready or unreachable
    internal,          // a bug in ct3
};

const char * error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, std::string message, std::string hint = {});

    ErrorKind kind() const noexcept { return kind_; }
    const std::string & message() const noexcept { return message_; }
    const std::string & hint() const noexcept { return hint_; }

private:
    ErrorKind kind_;
    std::string message_;
    std::string hint_;
};

// fail(kind, "tensor '{}' has shape {} (expected {})", name, a, b) — format and throw.
template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args &&... args) {
    throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

// Same, with a hint appended as "(hint: ...)".
template <typename... Args>
[[noreturn]] void fail_hint(ErrorKind kind, std::string hint, fmt::format_string<Args...> format, Args &&... args) {
    throw Error(kind, fmt::format(format, std::forward<Args>(args)...), std::move(hint));
}

}  // namespace ct3

// Throws ct3::Error(kind, formatted message) when `cond` is false.
#define CT3_CHECK(cond, kind, ...)                   \
    do {                                             \
        if (!(cond)) ::ct3::fail((kind), __VA_ARGS__); \
    } while (0)

// Internal invariant: a failure is a bug in ct3, reported with file and line.
#define CT3_ASSERT(cond)                                                                              \
    do {                                                                                              \
        if (!(cond))                                                                                  \
            ::ct3::fail(::ct3::ErrorKind::internal, "internal error: {} ({}:{}); please report this", \
                        #cond, __FILE__, __LINE__);                                                   \
    } while (0)
