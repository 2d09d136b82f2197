// The on-disk side of AdapterCache (--adapter_cache_dir). Layout:
//   <dir>/index.json      {"version":1, "strategy":"lfu", "entries":[{"dir", "query", "embedding":[...],
//                          "uses", "last_used", "embedder"?}, ...]}  in cache order, one entry a line
//   <dir>/<name>/         one PEFT adapter folder per entry: adapter_model.safetensors + adapter_config.json
//   <dir>/.lock           flock'ed while a cache uses the folder
// Crash safety: an entry folder is complete (files fsynced) before index.json names it; index.json is
// replaced atomically (tmp, fsync, rename, fsync of the folder); evicted folders are deleted only
// after the index that drops them is durable. A crash therefore leaves at worst an orphan folder.
// Entries whose adapter_config.json, embedder or embedding size differ from this run's are kept in
// index.json verbatim (after this run's entries) so that switching models back and forth does not
// lose them; entries with missing or corrupt files are dropped from the next index (files kept).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/adapter_cache.h"

namespace ct3::client {

struct StoredEntry {
    std::string dir;    // folder name under the cache folder
    std::string query;
    std::vector<float> key;
    uint64_t uses = 0;
    uint64_t last_used = 0;
};

struct LoadedEntry {
    StoredEntry meta;
    std::shared_ptr<const AdapterTensors> adapter;
};

class CacheStore {
public:
    // Creates `dir` if needed and locks it; throws ct3::Error (io, or unavailable when another
    // process holds the lock; invalid_argument for an unparsable adapter_config_json).
    CacheStore(std::filesystem::path dir, const std::string & adapter_config_json, std::string embedder,
               std::string device);
    ~CacheStore();

    CacheStore(const CacheStore &) = delete;
    CacheStore & operator=(const CacheStore &) = delete;

    // Reads index.json and the folders it names, in index order. Never throws for bad files: a bad
    // index.json yields nothing, a bad or incompatible entry is skipped; each with a warning naming
    // the file. `embedding_dim` 0 takes the size of the first loadable entry.
    std::vector<LoadedEntry> load(size_t embedding_dim);

    // A folder name not used on disk and never handed out before by this store (thread-safe).
    std::string reserve_name();
    // Writes <dir>/<name>/ (both files, fsynced); removes the partial folder and throws on failure.
    void write_entry(const std::string & name, const AdapterTensors & adapter) const;
    // Replaces index.json atomically with `entries` followed by the kept foreign entries.
    void write_index(CacheStrategy strategy, const std::vector<StoredEntry> & entries) const;
    // Deletes <dir>/<name>/; failures are logged, not thrown (the index no longer names it).
    void remove_entry(const std::string & name) const;

    const std::filesystem::path & dir() const { return dir_; }

private:
    enum class Verdict { ok, foreign, corrupt };
    // Checks and loads entry `i` of index.json; logs why when the verdict is not ok.
    Verdict load_entry(const nlohmann::json & raw, size_t i, size_t & dim, LoadedEntry & out) const;

    std::filesystem::path dir_;
    nlohmann::json expected_config_;
    std::string config_text_;
    std::string embedder_;
    std::string device_;
    int lock_fd_ = -1;
    std::atomic<uint64_t> next_id_{1};
    std::vector<nlohmann::json> foreign_;  // incompatible entries, written back verbatim
};

// A safe entry folder name: [A-Za-z0-9._-]+, not "." or ".." (index.json is input; we delete by it).
bool valid_entry_name(const std::string & name);

}  // namespace ct3::client
