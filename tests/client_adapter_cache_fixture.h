// Shared helpers of the AdapterCache tests (client_adapter_cache_test, client_adapter_cache_persist_test):
// orthogonal keys, small named adapters, options, a log capture and a multi-threaded workload.
#pragma once

#include <algorithm>
#include <filesystem>
#include <atomic>
#include <cmath>
#include <functional>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <torch/torch.h>

#include "client/adapter_cache.h"
#include "models/error.h"
#include "models/log.h"

namespace ct3::test::adapter_cache {

namespace fs = std::filesystem;
using ct3::client::AdapterCache;
using ct3::client::AdapterCacheOptions;
using ct3::client::AdapterTensors;
using ct3::client::CacheStrategy;

inline const char * const a_name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
inline const char * const b_name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
inline const std::string config_r8 = R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"]})";

// Unit vector i of `dim` dimensions: orthogonal keys make hits exact and independent.
inline at::Tensor basis(int64_t i, int64_t dim = 8) {
    at::Tensor v = torch::zeros({dim});
    v[i] = 1.0f;
    return v;
}

inline std::shared_ptr<const AdapterTensors> make_adapter(float id) {
    auto adapter = std::make_shared<AdapterTensors>();
    adapter->emplace_back(a_name, torch::full({4, 8}, id));
    adapter->emplace_back(b_name, torch::arange(32, torch::kFloat).reshape({8, 4}) + id);
    return adapter;
}

inline AdapterCacheOptions options(CacheStrategy strategy, size_t capacity = 4, double threshold = 0.9) {
    AdapterCacheOptions o;
    o.strategy = strategy;
    o.capacity = capacity;
    o.threshold = threshold;
    return o;
}

inline AdapterCacheOptions persisted(const fs::path & dir, size_t capacity = 4, const std::string & config = config_r8) {
    AdapterCacheOptions o = options(CacheStrategy::lfu, capacity);
    o.persist_dir = dir;
    o.adapter_config_json = config;
    return o;
}

inline std::vector<std::string> queries(const AdapterCache & cache) {
    std::vector<std::string> out;
    for (const auto & e : cache.entries()) out.push_back(e.query);
    return out;
}
inline std::vector<uint64_t> uses(const AdapterCache & cache) {
    std::vector<uint64_t> out;
    for (const auto & e : cache.entries()) out.push_back(e.uses);
    return out;
}

inline void insert_basis(AdapterCache & cache, int i) { cache.insert("q" + std::to_string(i), basis(i), make_adapter(i)); }
inline void hit(AdapterCache & cache, int i) { ASSERT_TRUE(cache.lookup(basis(i)).has_value()) << "q" << i; }

// The kind of ct3::Error that f throws; `internal` when it throws none.
inline ct3::ErrorKind kind_of(const std::function<void()> & f) {
    try {
        f();
    } catch (const ct3::Error & e) {
        return e.kind();
    }
    return ct3::ErrorKind::internal;
}

// Captures what the "client" logger writes while alive.
class LogCapture {
public:
    LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64)) {
        ct3::logger("client")->sinks().push_back(sink_);
    }
    ~LogCapture() { ct3::logger("client")->sinks().pop_back(); }
    std::string text() const {
        std::string all;
        for (const auto & line : sink_->last_formatted()) all += line;
        return all;
    }

private:
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// `threads` threads of mixed lookups and inserts over 16 directions; a hit's adapter must be its query's.
inline void hammer(AdapterCache & cache, int threads, int ops_per_thread) {
    std::vector<at::Tensor> keys;
    std::vector<std::shared_ptr<const AdapterTensors>> adapters;
    for (int i = 0; i < 16; ++i) {
        keys.push_back(basis(i, 16));
        adapters.push_back(make_adapter(float(i)));
    }
    std::atomic<int> hits{0}, failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937 rng(static_cast<uint32_t>(t));
            for (int op = 0; op < ops_per_thread; ++op) {
                const int k = int(rng() % 16);
                auto r = cache.lookup(keys[size_t(k)]);
                if (r) {
                    ++hits;
                    const float id = (*r->adapter)[0].second.data_ptr<float>()[0];
                    if (r->query != "q" + std::to_string(k) || id != float(k)) ++failures;
                } else {
                    cache.insert("q" + std::to_string(k), keys[size_t(k)], adapters[size_t(k)]);
                }
                if (cache.size() > cache.capacity()) ++failures;
                if (op % 16 == 0) (void) cache.entries();
            }
        });
    }
    for (auto & th : pool) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(hits.load(), 0);
    EXPECT_LE(cache.size(), cache.capacity());
}

}  // namespace ct3::test::adapter_cache

// Expects `statement` to throw a ct3::Error whose message contains `text`.
#define EXPECT_CT3_ERROR_CONTAINS(statement, text)                                  \
    try {                                                                           \
        statement;                                                                  \
        ADD_FAILURE() << #statement " did not throw";                               \
    } catch (const ct3::Error & e) {                                                \
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what(); \
    }
