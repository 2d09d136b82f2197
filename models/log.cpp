#include "models/log.h"

#include <cstdlib>
#include <mutex>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "models/error.h"

namespace ct3 {

spdlog::level::level_enum log_level_from_string(const std::string & level, const std::string & source) {
    static const char * names[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (int i = 0; i < 7; ++i) {
        if (level == names[i]) return static_cast<spdlog::level::level_enum>(i);
    }
    if (level == "warning") return spdlog::level::warn;
    fail(ErrorKind::invalid_argument, "{}: unknown log level '{}' (expected trace, debug, info, warn, error, critical or off)",
         source, level);
}

static std::mutex g_log_mutex;

static std::shared_ptr<spdlog::sinks::sink> shared_sink() {
    static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    return sink;
}

void log_init(const std::string & level) {
    std::string value = level;
    const char * source = "--log-level";
    if (value.empty()) {
        const char * env = std::getenv("CT3_LOG_LEVEL");
        if (env == nullptr || *env == '\0') value = "info";
        else {
            value = env;
            source = "CT3_LOG_LEVEL";
        }
    }
    spdlog::set_level(log_level_from_string(value, source));
    spdlog::set_pattern("%^%L%$ %H:%M:%S.%e [%n] %v");
}

std::shared_ptr<spdlog::logger> logger(const std::string & component) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    auto existing = spdlog::get(component);
    if (existing) return existing;
    auto created = std::make_shared<spdlog::logger>(component, shared_sink());
    created->set_level(spdlog::get_level());
    created->set_pattern("%^%L%$ %H:%M:%S.%e [%n] %v");
    spdlog::register_logger(created);
    return created;
}

void add_log_flags(CLI::App & app, std::string & level) {
    app.add_option("--log-level", level, "Log verbosity: trace, debug, info, warn, error, critical, off")
        ->envname("CT3_LOG_LEVEL");
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

}  // namespace ct3
