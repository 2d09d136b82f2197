#include "models/error.h"

namespace ct3 {

const char * error_kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::invalid_argument: return "invalid_argument";
        case ErrorKind::not_found: return "not_found";
        case ErrorKind::bad_format: return "bad_format";
        case ErrorKind::unsupported: return "unsupported";
        case ErrorKind::io: return "io";
        case ErrorKind::unavailable: return "unavailable";
        case ErrorKind::internal: return "internal";
    }
    return "unknown";
}

static std::string with_hint(const std::string & message, const std::string & hint) {
    return hint.empty() ? message : message + " (hint: " + hint + ")";
}

Error::Error(ErrorKind kind, std::string message, std::string hint)
    : std::runtime_error(with_hint(message, hint)), kind_(kind), message_(std::move(message)), hint_(std::move(hint)) {}

}  // namespace ct3
