// AdapterCache in memory: CT3's local adapter manager semantics (LFU and random eviction, threshold,
// best-of-many), LRU, key validation, zero-copy hits and concurrent use (runs under TSan and ASan).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tests/client_adapter_cache_fixture.h"
#include "tests/test_support.h"

using namespace ct3::client;
using namespace ct3::test::adapter_cache;

TEST(AdapterCacheOptions, StrategyNamesAndValidation) {
    for (auto s : {CacheStrategy::lfu, CacheStrategy::random, CacheStrategy::lru}) {
        EXPECT_EQ(parse_cache_strategy(cache_strategy_name(s)), s);
    }
    EXPECT_EQ(kind_of([] { parse_cache_strategy("fifo"); }), ct3::ErrorKind::invalid_argument);
    EXPECT_CT3_ERROR_CONTAINS(parse_cache_strategy("fifo"), "--local_adapter_manager_strategy: unknown strategy 'fifo' "
                                                      "(expected lfu, random or lru)");
    auto bad = [](AdapterCacheOptions o) { return kind_of([&] { AdapterCache cache(o); }); };
    EXPECT_EQ(bad(options(CacheStrategy::lfu, 0)), ct3::ErrorKind::invalid_argument);
    EXPECT_EQ(bad(options(CacheStrategy::lfu, 4, 1.5)), ct3::ErrorKind::invalid_argument);
    EXPECT_EQ(bad(options(CacheStrategy::lfu, 4, std::nan(""))), ct3::ErrorKind::invalid_argument);
    AdapterCacheOptions o = options(CacheStrategy::lfu);
    o.device = "no-such-device";
    EXPECT_EQ(bad(o), ct3::ErrorKind::invalid_argument);
    ct3::test::TempDir tmp;
    EXPECT_EQ(bad(persisted(tmp.path(), 4, "")), ct3::ErrorKind::invalid_argument);
    EXPECT_EQ(bad(persisted(tmp.path(), 4, "{not json")), ct3::ErrorKind::invalid_argument);
}

// The hand-checked sequence: counts [1,2,0,1] evict q2; the fresh q4 (0) goes next; ties -> oldest.
TEST(AdapterCacheLfu, SequenceMatchesOriginal) {
    AdapterCache cache(options(CacheStrategy::lfu));
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(cache.insert("q" + std::to_string(i), basis(i), make_adapter(i)));
    hit(cache, 1), hit(cache, 1), hit(cache, 0), hit(cache, 3);
    EXPECT_EQ(uses(cache), (std::vector<uint64_t>{1, 2, 0, 1}));
    EXPECT_EQ(cache.insert("q4", basis(4), make_adapter(4)), std::optional<std::string>("q2"));
    EXPECT_EQ(queries(cache), (std::vector<std::string>{"q0", "q1", "q3", "q4"}));
    EXPECT_EQ(uses(cache), (std::vector<uint64_t>{1, 2, 1, 0}));
    // A fresh entry is the first eviction candidate: q4 (0 uses) goes although it is the newest.
    EXPECT_EQ(cache.insert("q5", basis(5), make_adapter(5)), std::optional<std::string>("q4"));
    hit(cache, 5);
    // All of q0, q3, q5 have 1 use: the first (oldest) goes.
    EXPECT_EQ(cache.insert("q6", basis(6), make_adapter(6)), std::optional<std::string>("q0"));
    EXPECT_EQ(queries(cache), (std::vector<std::string>{"q1", "q3", "q5", "q6"}));
    EXPECT_EQ(cache.size(), 4u);
}

// Differential test against a transcription of CT3's Python manager (parallel lists, list.index(min)).
TEST(AdapterCacheLfu, RandomSequencesMatchReferenceModel) {
    std::mt19937 rng(7);
    for (int round = 0; round < 20; ++round) {
        const size_t capacity = 1 + rng() % 4;
        AdapterCache cache(options(CacheStrategy::lfu, capacity));
        std::vector<int> ref_keys;
        std::vector<uint64_t> ref_counts;
        for (int step = 0; step < 60; ++step) {
            const int k = int(rng() % 8);
            auto hit_result = cache.lookup(basis(k));
            auto pos = std::find(ref_keys.begin(), ref_keys.end(), k);
            ASSERT_EQ(hit_result.has_value(), pos != ref_keys.end());
            if (hit_result) {
                ASSERT_EQ(hit_result->index, size_t(pos - ref_keys.begin()));
                ref_counts[hit_result->index] += 1;
                continue;
            }
            std::optional<std::string> expected;
            if (ref_keys.size() >= capacity) {
                const size_t victim = size_t(std::min_element(ref_counts.begin(), ref_counts.end()) - ref_counts.begin());
                expected = "q" + std::to_string(ref_keys[victim]);
                ref_keys.erase(ref_keys.begin() + std::ptrdiff_t(victim));
                ref_counts.erase(ref_counts.begin() + std::ptrdiff_t(victim));
            }
            ASSERT_EQ(cache.insert("q" + std::to_string(k), basis(k), make_adapter(k)), expected);
            ref_keys.push_back(k);
            ref_counts.push_back(0);
            ASSERT_EQ(uses(cache), ref_counts);
        }
    }
}

TEST(AdapterCacheRandom, ReproducibleWithSeedAndBounded) {
    auto run = [](uint64_t seed) {
        AdapterCacheOptions o = options(CacheStrategy::random, 3);
        o.seed = seed;
        AdapterCache cache(o);
        std::vector<std::string> evicted;
        for (int i = 0; i < 24; ++i) {
            const std::vector<std::string> before = queries(cache);
            auto out = cache.insert("q" + std::to_string(i), basis(i % 8), make_adapter(i));
            EXPECT_LE(cache.size(), 3u);
            if (i < 3) {
                EXPECT_FALSE(out);
                continue;
            }
            EXPECT_TRUE(out);
            if (out) {
                EXPECT_NE(std::find(before.begin(), before.end(), *out), before.end()) << *out;
                evicted.push_back(*out);
            }
        }
        return evicted;
    };
    const auto a = run(42);
    EXPECT_EQ(a.size(), 21u);
    EXPECT_EQ(run(42), a);
    EXPECT_NE(run(43), a);  // 3^-21 odds of a false failure
}

TEST(AdapterCacheLru, EvictsLeastRecentlyUsed) {
    AdapterCache cache(options(CacheStrategy::lru, 3));
    insert_basis(cache, 0), insert_basis(cache, 1), insert_basis(cache, 2);
    hit(cache, 0);
    EXPECT_EQ(cache.insert("q3", basis(3), make_adapter(3)), std::optional<std::string>("q1"));
    hit(cache, 2);
    EXPECT_EQ(cache.insert("q4", basis(4), make_adapter(4)), std::optional<std::string>("q0"));
    EXPECT_EQ(queries(cache), (std::vector<std::string>{"q2", "q3", "q4"}));
    // An insert counts as a use: q3 (inserted at tick 5) is older than the hit on q2 (tick 6).
    EXPECT_EQ(cache.insert("q5", basis(5), make_adapter(5)), std::optional<std::string>("q3"));
}

TEST(AdapterCacheLookup, ThresholdBoundary) {
    const at::Tensor key = torch::tensor({3.0f, 1.0f, -2.0f, 0.5f});
    const at::Tensor query = torch::tensor({1.0f, 2.0f, -1.0f, 0.25f});
    AdapterCache probe(options(CacheStrategy::lfu, 4, -1.0));
    probe.insert("k", key, make_adapter(1));
    const double score = probe.lookup(query)->score;
    ASSERT_GT(score, 0.5);
    ASSERT_LT(score, 0.9);
    AdapterCache at_threshold(options(CacheStrategy::lfu, 4, score));
    at_threshold.insert("k", key, make_adapter(1));
    auto result = at_threshold.lookup(query);
    ASSERT_TRUE(result);  // score == threshold is a hit
    EXPECT_EQ(result->score, score);
    AdapterCache above(options(CacheStrategy::lfu, 4, std::nextafter(score, 2.0)));
    above.insert("k", key, make_adapter(1));
    EXPECT_FALSE(above.lookup(query));
    EXPECT_EQ(above.entries()[0].uses, 0u);  // a miss changes nothing
    // Orthogonal vectors score exactly 0.
    AdapterCache zero(options(CacheStrategy::lfu, 4, 0.0));
    zero.insert("e0", basis(0), make_adapter(0));
    EXPECT_TRUE(zero.lookup(basis(1)));
    AdapterCache tiny(options(CacheStrategy::lfu, 4, 1e-12));
    tiny.insert("e0", basis(0), make_adapter(0));
    EXPECT_FALSE(tiny.lookup(basis(1)));
}

TEST(AdapterCacheLookup, BestOfManyAndNonNormalisedKeys) {
    AdapterCache cache(options(CacheStrategy::lfu, 4, 0.4));
    EXPECT_FALSE(cache.lookup(basis(0, 4)));  // empty
    cache.insert("e0", 10.0f * basis(0, 4), make_adapter(0));
    cache.insert("e1", 0.01f * basis(1, 4), make_adapter(1));
    cache.insert("mid", torch::tensor({5.0f, 5.0f, 0.0f, 0.0f}), make_adapter(2));
    cache.insert("e2", basis(2, 4), make_adapter(3));
    auto near_e1 = cache.lookup(torch::tensor({0.2f, 1.0f, 0.0f, 0.0f}));
    ASSERT_TRUE(near_e1);
    EXPECT_EQ(near_e1->query, "e1");
    EXPECT_EQ(near_e1->index, 1u);
    EXPECT_NEAR(near_e1->score, 1.0 / std::sqrt(1.04), 1e-6);
    // Scaled, double, bf16 and [1, D] forms of the same direction all hit "mid" with cosine 1.
    for (const at::Tensor & q : {torch::tensor({1000.0f, 1000.0f, 0.0f, 0.0f}),
                                 torch::tensor({0.001, 0.001, 0.0, 0.0}, torch::kDouble),
                                 torch::tensor({2.0f, 2.0f, 0.0f, 0.0f}).to(torch::kBFloat16),
                                 torch::tensor({3.0f, 3.0f, 0.0f, 0.0f}).reshape({1, 4})}) {
        auto r = cache.lookup(q);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->query, "mid");
        EXPECT_NEAR(r->score, 1.0, 1e-6);
    }
    EXPECT_FALSE(cache.lookup(basis(3, 4)));  // orthogonal to everything: 0 < 0.4
    EXPECT_EQ(uses(cache), (std::vector<uint64_t>{0, 1, 4, 0}));
}

TEST(AdapterCacheLookup, InvalidEmbeddingsAreRejected) {
    AdapterCache cache(options(CacheStrategy::lfu));
    EXPECT_FALSE(cache.lookup(basis(0, 5)));  // empty cache: any size is fine
    cache.insert("q", basis(0, 4), make_adapter(0));
    const auto inf = std::numeric_limits<float>::infinity();
    for (const at::Tensor & bad :
         {torch::zeros({4}), torch::tensor({1.0f, NAN, 0.0f, 0.0f}), torch::tensor({inf, 0.0f, 0.0f, 0.0f}),
          torch::tensor({1, 0, 0, 0}), torch::ones({2, 4}), torch::zeros({0}), at::Tensor(), basis(0, 5)}) {
        EXPECT_EQ(kind_of([&] { cache.lookup(bad); }), ct3::ErrorKind::invalid_argument);
        EXPECT_EQ(kind_of([&] { cache.insert("x", bad, make_adapter(1)); }), ct3::ErrorKind::invalid_argument);
    }
    EXPECT_CT3_ERROR_CONTAINS(cache.lookup(basis(0, 5)), "the query embedding has 5 dimensions but the cached keys have 4");
    EXPECT_EQ(kind_of([&] { cache.insert("x", basis(1, 4), nullptr); }), ct3::ErrorKind::invalid_argument);
    EXPECT_EQ(cache.size(), 1u);
    cache.clear();
    EXPECT_EQ(cache.size(), 0u);
    cache.insert("q5", basis(0, 5), make_adapter(0));  // empty again: a new size is accepted
    EXPECT_TRUE(cache.lookup(basis(0, 5)));
}

TEST(AdapterCacheLookup, HitHandsOutTheInsertedTensors) {
    AdapterCache cache(options(CacheStrategy::lfu));
    auto adapter = make_adapter(7);
    cache.insert("q", basis(0), adapter);
    auto r = cache.lookup(basis(0));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->adapter.get(), adapter.get());
    ASSERT_EQ(r->adapter->size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ((*r->adapter)[i].first, (*adapter)[i].first);
        EXPECT_EQ((*r->adapter)[i].second.data_ptr(), (*adapter)[i].second.data_ptr());
    }
    EXPECT_EQ(cache.size(), 1u);  // a hit never inserts
    EXPECT_EQ(cache.entries()[0].n_tensors, 2u);
    EXPECT_EQ(cache.entries()[0].bytes, size_t(2 * 32 * 4));
}

TEST(AdapterCacheConcurrency, MixedLookupsAndInsertsInMemory) {
    for (auto strategy : {CacheStrategy::lfu, CacheStrategy::random, CacheStrategy::lru}) {
        AdapterCache cache(options(strategy, 4));
        hammer(cache, 8, 250);
    }
}
