// The local adapter cache ("local adapter manager" of CT3): trained LoRA adapters keyed by the unit
// embedding of the query they were trained for. A new query whose embedding has cosine >= threshold
// with the best cached key reuses that adapter instead of running test-time training again.
//
// Semantics follow CT3's LocalAdapterManager (../shared/reference/ct3_original.md §4):
//   - score = inner product of unit vectors (keys and queries are L2-normalised here);
//     a hit needs best score >= threshold; a hit only updates the strategy's bookkeeping;
//   - insert only after a successful TTT; when full, one entry is evicted BEFORE the new one is
//     appended at the end (cache order = insertion order);
//   - lfu: new entries start at 0 uses, a hit adds 1, the first entry with the fewest uses is evicted
//     (ties go to the oldest; a fresh entry is the next victim unless an older one also has 0);
//   - random: a uniformly random entry is evicted (std::mt19937_64 seeded by `seed`);
//   - lru (not in CT3): the least recently inserted-or-hit entry is evicted.
// Scores are accumulated in double over float32 keys (CT3 uses a float32 matmul), so they are
// deterministic and identical after a reload from disk (keys round-trip exactly through JSON).
//
// Adapters are held by shared_ptr<const ...>: a hit hands out the very tensors that were inserted
// (on the model's device), so swapping an adapter in is O(1) and never copies. Callers must not
// modify the tensors of an adapter once inserted.
//
// Persistence (--adapter_cache_dir), see adapter_cache_store.h for the layout: every insert writes
// the entry's PEFT folder, then index.json (atomically), then deletes evicted folders. Hits only
// mark the index dirty; flush() (also run by the destructor) writes the counts. The folder is
// locked (flock) for the cache's lifetime, so two processes cannot interleave their index writes.
// Loading never fails the program: unreadable or incompatible entries are skipped with a warning.
//
// Thread safety: every public method may be called concurrently (one mutex). Tensor conversion and
// the (slow) adapter folder writes happen outside the lock; only the small index write is inside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ct3::client {

class CacheStore;

enum class CacheStrategy { lfu, random, lru };

// "lfu" | "random" | "lru"; anything else throws ct3::Error(invalid_argument) naming
// --local_adapter_manager_strategy and the choices.
CacheStrategy parse_cache_strategy(const std::string & name);
const char * cache_strategy_name(CacheStrategy strategy);

// A trained adapter: PEFT tensor names ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
// -> fp32 tensors on the model's device.
using AdapterTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct AdapterCacheOptions {
    size_t capacity = 4;         // --local_adapter_manager_size (>= 1)
    double threshold = 0.4;      // --local_adapter_manager_threshold, in [-1, 1]
    CacheStrategy strategy = CacheStrategy::lfu;
    uint64_t seed = 0;           // random strategy
    std::filesystem::path persist_dir;  // --adapter_cache_dir; empty = in memory only
    // PEFT adapter_config.json text: written verbatim next to each persisted entry; a persisted entry
    // whose config differs (as parsed JSON) is not loaded. Required (valid JSON) when persisting.
    std::string adapter_config_json;
    std::string device = "cpu";  // where persisted entries are loaded to ("cpu", "cuda", "cuda:1", ...)
    // Optional guards for persisted keys: the embedder's identity (e.g. its name or folder) and the
    // embedding size. Empty / 0 = not checked (the size is then taken from the first entry). Entries
    // written with another embedder or size are kept on disk but not loaded.
    std::string embedder;
    size_t embedding_dim = 0;
};

struct CacheHit {
    std::shared_ptr<const AdapterTensors> adapter;  // the inserted tensors themselves
    double score = 0.0;                             // cosine with the entry's key
    std::string query;                              // the query the adapter was trained for
    size_t index = 0;                               // position in cache order at the time of the hit
};

struct CacheEntryInfo {
    std::string query;
    uint64_t uses = 0;       // hits since insertion (the LFU count; also tracked for the others)
    uint64_t last_used = 0;  // logical clock of the last insert or hit (the LRU order)
    std::string dir;         // folder name under persist_dir; empty when not persisted
    size_t n_tensors = 0;
    size_t bytes = 0;        // adapter size
};

class AdapterCache {
public:
    // Validates options (capacity >= 1, threshold in [-1, 1], device, adapter_config_json when
    // persisting) and loads persisted entries. More persisted entries than `capacity`: the strategy
    // evicts (as inserts would) until `capacity` remain; their folders are deleted at the next index
    // write. A bad index.json is warned about and left untouched until the first insert replaces it.
    explicit AdapterCache(AdapterCacheOptions options);
    ~AdapterCache();  // flushes pending hit counts (errors are logged)

    AdapterCache(const AdapterCache &) = delete;
    AdapterCache & operator=(const AdapterCache &) = delete;

    // The best entry for a query embedding (1-D, or [1, D]; any floating dtype and device). nullopt
    // when the cache is empty or the best score < threshold. Throws invalid_argument for a zero,
    // non-finite or non-float embedding, or one whose size differs from the cached keys.
    std::optional<CacheHit> lookup(const at::Tensor & query_embedding);

    // Adds an adapter trained for `query` (call only after a successful TTT). When full, evicts one
    // entry first and returns its query. With persist_dir, a failed disk write is logged and the
    // entry stays in memory only (the cache is an optimisation; answering must not fail on it).
    std::optional<std::string> insert(std::string query, const at::Tensor & query_embedding,
                                      std::shared_ptr<const AdapterTensors> adapter);

    size_t size() const;
    size_t capacity() const { return options_.capacity; }
    CacheStrategy strategy() const { return options_.strategy; }
    std::vector<CacheEntryInfo> entries() const;  // in cache order

    // Evicts everything (persisted folders of this cache's entries are deleted).
    void clear();
    // Writes index.json if hits changed the counts since the last write (no-op in memory).
    void flush();

private:
    struct Entry {
        std::string query;
        std::vector<float> key;  // unit norm
        std::shared_ptr<const AdapterTensors> adapter;
        uint64_t uses = 0;
        uint64_t last_used = 0;
        std::string dir;  // persisted folder name, empty if not (yet) on disk
    };

    std::vector<float> unit_key(const at::Tensor & embedding, const char * what) const;
    size_t expected_dim_locked() const;
    size_t victim_locked();
    void load_persisted();
    void write_index_locked();  // also deletes folders pending removal once the index is durable

    AdapterCacheOptions options_;
    mutable std::mutex mutex_;
    std::vector<Entry> entries_;
    std::mt19937_64 rng_;
    uint64_t clock_ = 0;
    bool dirty_ = false;                    // hits not yet written to index.json
    std::vector<std::string> to_remove_;    // evicted folders still named by the index on disk
    std::unique_ptr<CacheStore> store_;     // null when in memory
};

}  // namespace ct3::client
