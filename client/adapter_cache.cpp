// AdapterCache: the similarity-keyed LFU/random/LRU cache of trained adapters (see the header).
#include "client/adapter_cache.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "client/adapter_cache_store.h"
#include "models/error.h"
#include "models/log.h"

namespace ct3::client {

CacheStrategy parse_cache_strategy(const std::string & name) {
    if (name == "lfu") return CacheStrategy::lfu;
    if (name == "random") return CacheStrategy::random;
    if (name == "lru") return CacheStrategy::lru;
    fail(ErrorKind::invalid_argument, "--local_adapter_manager_strategy: unknown strategy '{}' (expected lfu, random or lru)",
         name);
}

const char * cache_strategy_name(CacheStrategy strategy) {
    switch (strategy) {
        case CacheStrategy::lfu: return "lfu";
        case CacheStrategy::random: return "random";
        case CacheStrategy::lru: return "lru";
    }
    return "?";
}

namespace {

double dot(const std::vector<float> & a, const std::vector<float> & b) {
    double sum = 0.0;
    for (size_t i = 0; i < a.size(); ++i) sum += double(a[i]) * double(b[i]);
    return sum;
}

size_t adapter_bytes(const AdapterTensors & adapter) {
    size_t bytes = 0;
    for (const auto & item : adapter) bytes += size_t(item.second.numel()) * item.second.element_size();
    return bytes;
}

}  // namespace

AdapterCache::AdapterCache(AdapterCacheOptions options) : options_(std::move(options)), rng_(options_.seed) {
    CT3_CHECK(options_.capacity >= 1, ErrorKind::invalid_argument,
              "--local_adapter_manager_size must be at least 1 (got {})", options_.capacity);
    CT3_CHECK(options_.threshold >= -1.0 && options_.threshold <= 1.0, ErrorKind::invalid_argument,
              "--local_adapter_manager_threshold must be a cosine similarity in [-1, 1] (got {})", options_.threshold);
    try {
        (void) at::Device(options_.device);
    } catch (const std::exception &) {
        fail(ErrorKind::invalid_argument, "adapter cache: unknown device '{}' (expected cpu, cuda or cuda:N)",
             options_.device);
    }
    if (!options_.persist_dir.empty()) {
        store_ = std::make_unique<CacheStore>(options_.persist_dir, options_.adapter_config_json, options_.embedder,
                                              options_.device);
        load_persisted();
    }
}

AdapterCache::~AdapterCache() {
    try {
        flush();
    } catch (const std::exception & e) {
        logger("client")->error("adapter cache: could not write the hit counts: {}", e.what());
    }
}

void AdapterCache::load_persisted() {
    std::vector<LoadedEntry> loaded = store_->load(options_.embedding_dim);
    std::lock_guard<std::mutex> lock(mutex_);
    for (LoadedEntry & item : loaded) {
        Entry entry;
        entry.query = std::move(item.meta.query);
        entry.key = std::move(item.meta.key);
        entry.adapter = std::move(item.adapter);
        entry.uses = item.meta.uses;
        entry.last_used = item.meta.last_used;
        entry.dir = std::move(item.meta.dir);
        clock_ = std::max(clock_, entry.last_used);
        entries_.push_back(std::move(entry));
    }
    if (entries_.size() > options_.capacity) {
        logger("client")->warn("adapter cache: {} holds {} entries but the cache size is {}; the {} strategy evicts "
                               "the rest (their folders are deleted at the next index write)",
                               store_->dir().string(), entries_.size(), options_.capacity,
                               cache_strategy_name(options_.strategy));
    }
    while (entries_.size() > options_.capacity) {
        const size_t victim = victim_locked();
        to_remove_.push_back(entries_[victim].dir);
        entries_.erase(entries_.begin() + std::ptrdiff_t(victim));
    }
}

std::vector<float> AdapterCache::unit_key(const at::Tensor & embedding, const char * what) const {
    CT3_CHECK(embedding.defined(), ErrorKind::invalid_argument, "adapter cache {}: the query embedding is undefined", what);
    const bool row = embedding.dim() == 2 && embedding.size(0) == 1;
    CT3_CHECK(embedding.dim() == 1 || row, ErrorKind::invalid_argument,
              "adapter cache {}: the query embedding must be 1-D (or [1, D]); got shape {}", what,
              c10::str(embedding.sizes()));
    CT3_CHECK(at::isFloatingType(embedding.scalar_type()), ErrorKind::invalid_argument,
              "adapter cache {}: the query embedding must be a floating-point tensor (got {})", what,
              c10::toString(embedding.scalar_type()));
    CT3_CHECK(embedding.numel() > 0, ErrorKind::invalid_argument, "adapter cache {}: the query embedding is empty", what);
    const at::Tensor values = embedding.detach().reshape({-1}).to(at::kCPU, at::kFloat).contiguous();
    const float * data = values.data_ptr<float>();
    const size_t n = size_t(values.numel());
    double norm2 = 0.0;
    for (size_t i = 0; i < n; ++i) {
        CT3_CHECK(std::isfinite(data[i]), ErrorKind::invalid_argument,
                  "adapter cache {}: the query embedding has a non-finite value at {}", what, i);
        norm2 += double(data[i]) * double(data[i]);
    }
    const double norm = std::sqrt(norm2);
    CT3_CHECK(norm > 0.0 && std::isfinite(norm), ErrorKind::invalid_argument,
              "adapter cache {}: the query embedding has zero norm (cannot be normalised)", what);
    // Normalised here even when the embedder already did: keys must be unit for score == cosine.
    std::vector<float> key(n);
    for (size_t i = 0; i < n; ++i) key[i] = float(double(data[i]) / norm);
    return key;
}

size_t AdapterCache::expected_dim_locked() const {
    return entries_.empty() ? options_.embedding_dim : entries_.front().key.size();
}

size_t AdapterCache::victim_locked() {
    CT3_ASSERT(!entries_.empty());
    size_t victim = 0;
    switch (options_.strategy) {
        case CacheStrategy::lfu:  // first minimum: ties go to the oldest entry, as CT3's list.index(min)
            for (size_t i = 1; i < entries_.size(); ++i) {
                if (entries_[i].uses < entries_[victim].uses) victim = i;
            }
            break;
        case CacheStrategy::lru:
            for (size_t i = 1; i < entries_.size(); ++i) {
                if (entries_[i].last_used < entries_[victim].last_used) victim = i;
            }
            break;
        case CacheStrategy::random:
            victim = std::uniform_int_distribution<size_t>(0, entries_.size() - 1)(rng_);
            break;
    }
    return victim;
}

std::optional<CacheHit> AdapterCache::lookup(const at::Tensor & query_embedding) {
    const std::vector<float> key = unit_key(query_embedding, "lookup");
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.empty()) return std::nullopt;
    const size_t dim = expected_dim_locked();
    CT3_CHECK(key.size() == dim, ErrorKind::invalid_argument,
              "adapter cache lookup: the query embedding has {} dimensions but the cached keys have {} "
              "(hint: the embedder changed?)",
              key.size(), dim);
    size_t best = 0;
    double best_score = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < entries_.size(); ++i) {
        const double score = dot(key, entries_[i].key);
        if (score > best_score) {  // strict: the first of equal scores wins, as torch.max
            best_score = score;
            best = i;
        }
    }
    if (best_score < options_.threshold) return std::nullopt;
    Entry & entry = entries_[best];
    entry.uses += 1;
    entry.last_used = ++clock_;
    if (store_) dirty_ = true;
    CacheHit hit;
    hit.adapter = entry.adapter;
    hit.score = best_score;
    hit.query = entry.query;
    hit.index = best;
    return hit;
}

std::optional<std::string> AdapterCache::insert(std::string query, const at::Tensor & query_embedding,
                                                std::shared_ptr<const AdapterTensors> adapter) {
    CT3_CHECK(adapter != nullptr && !adapter->empty(), ErrorKind::invalid_argument,
              "adapter cache insert: the adapter for query '{}' has no tensors", query);
    const std::vector<float> key = unit_key(query_embedding, "insert");
    auto check_dim = [&]() {
        const size_t dim = expected_dim_locked();
        CT3_CHECK(dim == 0 || key.size() == dim, ErrorKind::invalid_argument,
                  "adapter cache insert: the query embedding has {} dimensions but the cache's keys have {}",
                  key.size(), dim);
    };
    {
        std::lock_guard<std::mutex> lock(mutex_);
        check_dim();  // before the slow folder write
    }
    // The adapter folder is written outside the lock: it can take seconds for a large adapter.
    std::string dir;
    if (store_) {
        dir = store_->reserve_name();
        try {
            store_->write_entry(dir, *adapter);
        } catch (const std::exception & e) {
            logger("client")->error("adapter cache: keeping the adapter for '{}' in memory only: {}", query, e.what());
            dir.clear();
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    try {
        check_dim();  // clear() and another insert may have run meanwhile
    } catch (...) {
        if (!dir.empty()) store_->remove_entry(dir);
        throw;
    }
    std::optional<std::string> evicted;
    if (entries_.size() >= options_.capacity) {  // evict BEFORE appending, as CT3
        const size_t victim = victim_locked();
        evicted = std::move(entries_[victim].query);
        if (!entries_[victim].dir.empty()) to_remove_.push_back(entries_[victim].dir);
        entries_.erase(entries_.begin() + std::ptrdiff_t(victim));
    }
    Entry entry;
    entry.query = std::move(query);
    entry.key = key;
    entry.adapter = std::move(adapter);
    entry.last_used = ++clock_;  // an insert counts as a use for LRU; LFU starts at 0 uses
    entry.dir = std::move(dir);
    entries_.push_back(std::move(entry));
    if (store_) write_index_locked();
    return evicted;
}

void AdapterCache::write_index_locked() {
    std::vector<StoredEntry> stored;
    for (const Entry & e : entries_) {
        if (e.dir.empty()) continue;  // its folder could not be written
        StoredEntry s;
        s.dir = e.dir;
        s.query = e.query;
        s.key = e.key;
        s.uses = e.uses;
        s.last_used = e.last_used;
        stored.push_back(std::move(s));
    }
    try {
        store_->write_index(options_.strategy, stored);
    } catch (const std::exception & e) {
        // The old index may still name the evicted folders: keep them until a write succeeds.
        logger("client")->error("adapter cache: could not write the index: {}", e.what());
        return;
    }
    dirty_ = false;
    for (const std::string & dir : to_remove_) store_->remove_entry(dir);
    to_remove_.clear();
}

size_t AdapterCache::size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
}

std::vector<CacheEntryInfo> AdapterCache::entries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<CacheEntryInfo> infos;
    infos.reserve(entries_.size());
    for (const Entry & e : entries_) {
        CacheEntryInfo info;
        info.query = e.query;
        info.uses = e.uses;
        info.last_used = e.last_used;
        info.dir = e.dir;
        info.n_tensors = e.adapter->size();
        info.bytes = adapter_bytes(*e.adapter);
        infos.push_back(std::move(info));
    }
    return infos;
}

void AdapterCache::clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry & e : entries_) {
        if (!e.dir.empty()) to_remove_.push_back(e.dir);
    }
    entries_.clear();
    if (store_) write_index_locked();
}

void AdapterCache::flush() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (store_ && dirty_) write_index_locked();
}

}  // namespace ct3::client
