// Logging: spdlog to stderr, one named logger per component ("model", "kb", "server", "ttt", ...).
// Results go to stdout; logs never do. The level comes from --log-level or CT3_LOG_LEVEL.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace CLI { class App; }

namespace ct3 {

// Parses "trace|debug|info|warn|error|critical|off" (throws ct3::Error naming `source` otherwise).
spdlog::level::level_enum log_level_from_string(const std::string & level, const std::string & source);

// Sets the global level; safe to call more than once. Applies CT3_LOG_LEVEL when `level` is empty.
void log_init(const std::string & level = {});

// The logger of one component, created on first use, writing to stderr with the shared format.
std::shared_ptr<spdlog::logger> logger(const std::string & component);

// Adds --log-level (env CT3_LOG_LEVEL) to a program; call log_init(value) after parsing.
void add_log_flags(CLI::App & app, std::string & level);

// True when stderr is a terminal (progress bars are drawn only then).
bool stderr_is_tty();

}  // namespace ct3
