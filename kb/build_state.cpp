#include "kb/build_state.h"

#include <string>
#include <vector>

#include <fmt/ranges.h>

#include "models/error.h"
#include "models/log.h"
#include "models/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3::kb {

namespace {

// Top-level argument names whose values differ between two argument objects (for the error).
std::string changed_arguments(const json & before, const json & now) {
    std::vector<std::string> names;
    for (const auto & [key, value] : now.items())
        if (!before.is_object() || !before.contains(key) || before[key] != value) names.push_back(key);
    if (before.is_object())
        for (const auto & [key, value] : before.items())
            if (!now.contains(key)) names.push_back(key);
    return names.empty() ? std::string("unknown") : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

PartialBuild::PartialBuild(const fs::path & dir, const json & arguments, bool restart)
    : dir_(dir), arguments_(arguments), fingerprint_(sha256_hex(arguments.dump())) {
    auto log = logger("kb");
    std::error_code ec;
    if (restart && fs::exists(dir, ec)) {
        log->info("--restart: deleting the partial build '{}'", dir.string());
        fs::remove_all(dir, ec);
        CT3_CHECK(!ec, ErrorKind::io, "cannot delete the partial build '{}': {}", dir.string(), ec.message());
    }
    const fs::path progress = dir / kProgressFile;
    if (!fs::exists(dir, ec)) {
        fs::create_directories(dir, ec);
        CT3_CHECK(!ec, ErrorKind::io, "cannot create '{}': {}", dir.string(), ec.message());
        fsync_parent(dir);
        lock_ = std::make_unique<DirLock>(dir);
        write_progress();
        return;
    }
    CT3_CHECK(fs::is_directory(dir, ec), ErrorKind::invalid_argument,
              "'{}' exists and is not a folder (it is where a partial build would go)", dir.string());
    lock_ = std::make_unique<DirLock>(dir);
    json state;
    try {
        state = json::parse(read_whole_file(progress, "progress file"));
    } catch (const json::exception & e) {
        fail_hint(ErrorKind::bad_format, "pass --restart to start over", "'{}' is not valid JSON ({})",
                  progress.string(), e.what());
    } catch (const Error & e) {
        fail_hint(ErrorKind::bad_format, "pass --restart to start over",
                  "'{}' holds an unfinished build without a readable progress file: {}", dir.string(), e.message());
    }
    const bool valid = state.is_object() && state.value("fingerprint", json()).is_string() &&
                       state.value("shards_done", json()).is_number_integer() &&
                       state.value("rows_done", json()).is_number_integer() && state["shards_done"].get<int64_t>() >= 0 &&
                       state["rows_done"].get<int64_t>() >= 0;
    if (!valid)
        fail_hint(ErrorKind::bad_format, "pass --restart to start over",
                  "'{}' lacks fingerprint, shards_done or rows_done", progress.string());
    if (state["fingerprint"].get<std::string>() != fingerprint_)
        fail_hint(ErrorKind::invalid_argument, "pass --restart to discard it, or rerun with the original arguments",
                  "'{}' holds an unfinished build with other arguments (changed: {})", dir.string(),
                  changed_arguments(state.value("arguments", json()), arguments_));
    shards_done_ = state["shards_done"].get<int64_t>();
    rows_done_ = state["rows_done"].get<int64_t>();
    log->info("resuming the partial build '{}' after {} shards ({} texts)", dir.string(), shards_done_, rows_done_);
}

void PartialBuild::record(int64_t shards_done, int64_t rows_done) {
    shards_done_ = shards_done;
    rows_done_ = rows_done;
    write_progress();
}

void PartialBuild::finish() {
    std::error_code ec;
    fs::remove(dir_ / kProgressFile, ec);
    CT3_CHECK(!ec, ErrorKind::io, "cannot delete '{}': {}", (dir_ / kProgressFile).string(), ec.message());
}

void PartialBuild::write_progress() const {
    const json state = {{"fingerprint", fingerprint_},
                        {"arguments", arguments_},
                        {"shards_done", shards_done_},
                        {"rows_done", rows_done_}};
    write_file_atomic(dir_ / kProgressFile, state.dump(2) + "\n");
}

}  // namespace ct3::kb
