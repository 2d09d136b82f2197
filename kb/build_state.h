// The partial folder of a KB build (`<save_dir>.partial/`) and its progress file, which make a
// killed build resumable.
//
// progress.json = {"fingerprint": sha256 of the canonical JSON of the result-changing arguments,
// "arguments": that JSON (to say what changed), "shards_done", "rows_done"}. It is rewritten
// atomically after each shard's embeddings are fsynced, so it never claims rows that are not on
// disk; rows past rows_done (a half-appended shard) are cut off on resume.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "kb/kb_files.h"

namespace ct3::kb {

inline constexpr const char * kProgressFile = "progress.json";

class PartialBuild {
public:
    // Opens `dir` for a build with these result-changing `arguments`: creates it when absent;
    // resumes it when its fingerprint matches; refuses (invalid_argument, hint --restart) when it
    // belongs to other arguments. restart: deletes an existing partial folder first. Holds a lock
    // on the folder until destroyed.
    PartialBuild(const std::filesystem::path & dir, const nlohmann::json & arguments, bool restart);

    const std::filesystem::path & dir() const { return dir_; }
    const std::string & fingerprint() const { return fingerprint_; }
    int64_t shards_done() const { return shards_done_; }
    int64_t rows_done() const { return rows_done_; }

    // Durably records that the first `shards_done` shards (`rows_done` rows) are on disk.
    void record(int64_t shards_done, int64_t rows_done);
    // Drops progress.json (not part of a KB) before the folder becomes the KB.
    void finish();

private:
    void write_progress() const;

    std::filesystem::path dir_;
    nlohmann::json arguments_;
    std::string fingerprint_;
    int64_t shards_done_ = 0;
    int64_t rows_done_ = 0;
    std::unique_ptr<DirLock> lock_;
};

}  // namespace ct3::kb
