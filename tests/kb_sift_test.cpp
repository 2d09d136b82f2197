// SIFT and the retriever against a straightforward reference: the full (K+1)x(K+1) covariance
// matrix conditioned step by step exactly as activeft's VTL does (ct3_original.md §2.3).
#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include <faiss/IndexFlat.h>
#include <gtest/gtest.h>

#include "kb/knowledge_base.h"
#include "kb/retriever.h"
#include "kb/sift.h"
#include "models/error.h"
#include "tests/memory_kb.h"

namespace {

using ct3::kb::SiftPick;

std::vector<float> random_unit_rows(int64_t n, int64_t d, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(n * d));
    for (int64_t i = 0; i < n; ++i) {
        double norm = 0;
        for (int64_t j = 0; j < d; ++j) norm += std::pow(x[i * d + j] = normal(rng), 2);
        for (int64_t j = 0; j < d; ++j) x[i * d + j] = float(x[i * d + j] / std::sqrt(norm));
    }
    return x;
}

// The literal algorithm: Σ = Z Zᵀ over Z = [x_1..x_K; q]; pick argmin_j Σ_qq − Σ_qj²/(Σ_jj+λ);
// Σ ← Σ − Σ[:,j]Σ[j,:]/(Σ_jj+λ).
std::vector<SiftPick> reference_sift(const std::vector<float> & x, int64_t K, const std::vector<float> & q,
                                     int64_t d, int64_t n, double lambda) {
    const int64_t m = K + 1;
    auto row = [&](int64_t i) { return i < K ? &x[size_t(i * d)] : q.data(); };
    std::vector<double> cov(size_t(m * m));
    for (int64_t a = 0; a < m; ++a)
        for (int64_t b = 0; b < m; ++b) {
            double s = 0;
            for (int64_t t = 0; t < d; ++t) s += double(row(a)[t]) * row(b)[t];
            cov[a * m + b] = s;
        }
    std::vector<SiftPick> picks;
    for (int64_t step = 0; step < n; ++step) {
        int64_t best = 0;
        double best_v = 1e300;
        for (int64_t j = 0; j < K; ++j) {
            const double v = cov[K * m + K] - cov[K * m + j] * cov[K * m + j] / (cov[j * m + j] + lambda);
            if (v < best_v) best_v = v, best = j;
        }
        picks.push_back({best, best_v});
        const double denom = cov[best * m + best] + lambda;
        std::vector<double> col(static_cast<size_t>(m), 0.0);
        for (int64_t i = 0; i < m; ++i) col[i] = cov[i * m + best];
        for (int64_t a = 0; a < m; ++a)
            for (int64_t b = 0; b < m; ++b) cov[a * m + b] -= col[a] * col[b] / denom;
    }
    return picks;
}

void expect_same_picks(const std::vector<SiftPick> & got, const std::vector<SiftPick> & want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].candidate, want[i].candidate) << "pick " << i;
        EXPECT_NEAR(got[i].variance, want[i].variance, 1e-6) << "pick " << i;
    }
}

TEST(Sift, MatchesReferenceOnRandomData) {
    for (uint32_t seed : {1u, 2u, 3u}) {
        for (double lambda : {0.01, 0.1, 1.0}) {
            const int64_t K = 60, d = 16, n = 25;
            const auto x = random_unit_rows(K, d, seed);
            const auto q = random_unit_rows(1, d, seed + 100);
            expect_same_picks(ct3::kb::sift_select(x.data(), K, q.data(), d, n, lambda),
                              reference_sift(x, K, q, d, n, lambda));
        }
    }
}

TEST(Sift, FirstPickIsNearestNeighbourAndVarianceDecreases) {
    const int64_t K = 200, d = 32;
    const auto x = random_unit_rows(K, d, 7);
    const auto q = random_unit_rows(1, d, 8);
    const auto picks = ct3::kb::sift_select(x.data(), K, q.data(), d, 32, 0.01);
    int64_t nearest = 0;
    double best = -1;
    for (int64_t j = 0; j < K; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(x[j * d + t]) * q[t];
        if (std::abs(s) > best) best = std::abs(s), nearest = j;
    }
    EXPECT_EQ(picks[0].candidate, nearest);
    EXPECT_NEAR(picks[0].variance, 1 - best * best / 1.01, 1e-6);
    for (size_t i = 1; i < picks.size(); ++i) EXPECT_LE(picks[i].variance, picks[i - 1].variance + 1e-12);
}

TEST(Sift, SkipsNearDuplicatesWithSmallLambdaAndRepeatsWithLarge) {
    // Candidates: the query direction twice (exact duplicates) and an orthogonal-ish third.
    const int64_t d = 4;
    std::vector<float> q = {1, 0, 0, 0};
    std::vector<float> x = {0.9f, 0.435889894f, 0, 0,   // close to q
                            0.9f, 0.435889894f, 0, 0,   // its duplicate
                            0.8f, 0, 0.6f, 0};          // less similar, different direction
    const auto small = ct3::kb::sift_select(x.data(), 3, q.data(), d, 2, 1e-4);
    EXPECT_EQ(small[0].candidate, 0);
    EXPECT_EQ(small[1].candidate, 2) << "a duplicate adds no information when lambda is small";
    const auto large = ct3::kb::sift_select(x.data(), 3, q.data(), d, 3, 100.0);
    EXPECT_EQ(large[0].candidate, 0);
    EXPECT_EQ(large[1].candidate, 0) << "with a large lambda the best point is observed again";
    expect_same_picks(large, reference_sift(x, 3, q, d, 3, 100.0));
}

TEST(Sift, MorePicksThanCandidatesRepeats) {
    const auto x = random_unit_rows(3, 8, 11);
    const auto q = random_unit_rows(1, 8, 12);
    const auto picks = ct3::kb::sift_select(x.data(), 3, q.data(), 8, 10, 0.01);
    EXPECT_EQ(picks.size(), 10u);
    expect_same_picks(picks, reference_sift(x, 3, q, 8, 10, 0.01));
}

TEST(Sift, RejectsBadArguments) {
    const auto x = random_unit_rows(3, 8, 1);
    const auto q = random_unit_rows(1, 8, 2);
    EXPECT_THROW(ct3::kb::sift_select(x.data(), 3, q.data(), 8, 2, 0.0), ct3::Error);
    EXPECT_THROW(ct3::kb::sift_select(x.data(), 3, q.data(), 8, 2, NAN), ct3::Error);
    EXPECT_THROW(ct3::kb::sift_select(x.data(), 0, q.data(), 8, 2, 0.01), ct3::Error);
    auto bad = x;
    bad[5] = INFINITY;
    EXPECT_THROW(ct3::kb::sift_select(bad.data(), 3, q.data(), 8, 2, 0.01), ct3::Error);
    EXPECT_TRUE(ct3::kb::sift_select(x.data(), 0, q.data(), 8, 0, 0.01).empty());
}

using ct3::test::MemoryKb;  // a KB held in memory over a real FAISS flat index

// Reference pre-selection: all points by decreasing |⟨x,q⟩|, first K.
std::vector<int64_t> reference_preselect(const std::vector<float> & x, int64_t d, const std::vector<float> & q,
                                         int64_t K) {
    const int64_t n = int64_t(x.size()) / d;
    std::vector<std::pair<double, int64_t>> scored;
    for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(x[i * d + t]) * q[t];
        scored.push_back({-std::abs(s), i});
    }
    std::stable_sort(scored.begin(), scored.end());
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < std::min(K, n); ++i) ids.push_back(scored[size_t(i)].second);
    return ids;
}

TEST(Retriever, SiftOverPreselectionMatchesReference) {
    const int64_t n = 500, d = 24;
    MemoryKb kb(random_unit_rows(n, d, 21), d);
    ct3::kb::Retriever retriever(kb);
    const auto q = random_unit_rows(1, d, 22);
    for (int64_t K : {50, 1000}) {  // 1000 > ntotal: clamped
        ct3::kb::SearchParams params;
        params.k = 16;
        params.candidates = K;
        const auto hits = retriever.search(q.data(), params);
        const auto ids = reference_preselect(std::vector<float>(kb.embedding(0), kb.embedding(0) + n * d), d, q, K);
        std::vector<float> cand;
        for (int64_t id : ids) cand.insert(cand.end(), kb.embedding(id), kb.embedding(id) + d);
        const auto want = reference_sift(cand, int64_t(ids.size()), q, d, 16, 0.01);
        ASSERT_EQ(hits.size(), want.size());
        for (size_t i = 0; i < hits.size(); ++i) {
            EXPECT_EQ(hits[i].id, ids[size_t(want[i].candidate)]) << "K=" << K << " pick " << i;
            EXPECT_NEAR(hits[i].score, want[i].variance, 1e-5);
        }
    }
}

TEST(Retriever, FaissModeIsTopKByAbsoluteCosine) {
    const int64_t n = 300, d = 16;
    const auto x = random_unit_rows(n, d, 31);
    MemoryKb kb(x, d);
    ct3::kb::Retriever retriever(kb);
    const auto q = random_unit_rows(1, d, 32);
    ct3::kb::SearchParams params;
    params.mode = ct3::kb::SearchMode::faiss;
    params.k = 20;
    params.candidates = 5;  // faiss mode pre-selects at least k
    const auto hits = retriever.search(q.data(), params);
    const auto ids = reference_preselect(x, d, q, 20);
    ASSERT_EQ(hits.size(), 20u);
    for (size_t i = 0; i < hits.size(); ++i) {
        EXPECT_EQ(hits[i].id, ids[i]);
        EXPECT_NEAR(hits[i].score, std::abs(hits[i].similarity), 1e-5);
        if (i > 0) {
            EXPECT_GE(hits[i - 1].score, hits[i].score);
        }
    }
    // Some of the top |cos| neighbours of a random query point away from it.
    EXPECT_TRUE(std::any_of(hits.begin(), hits.end(), [](const auto & h) { return h.similarity < 0; }));
}

TEST(Retriever, UnnormalisedQueryIsNormalisedAndBadQueriesRejected) {
    const int64_t d = 8;
    MemoryKb kb(random_unit_rows(40, d, 41), d);
    ct3::kb::Retriever retriever(kb);
    auto q = random_unit_rows(1, d, 42);
    const auto unit_hits = retriever.search(q.data(), {});
    for (float & v : q) v *= 7.5f;
    const auto scaled_hits = retriever.search(q.data(), {});
    ASSERT_EQ(unit_hits.size(), scaled_hits.size());
    for (size_t i = 0; i < unit_hits.size(); ++i) EXPECT_EQ(unit_hits[i].id, scaled_hits[i].id);
    std::vector<float> zeros(d, 0.f);
    EXPECT_THROW(retriever.search(zeros.data(), {}), ct3::Error);
    q[0] = NAN;
    EXPECT_THROW(retriever.search(q.data(), {}), ct3::Error);
    ct3::kb::SearchParams bad;
    bad.k = 0;
    EXPECT_THROW(retriever.search(zeros.data(), bad), ct3::Error);
    bad = {};
    bad.nprobe = 4;  // a flat index has no inverted lists
    q[0] = 1;
    EXPECT_THROW(retriever.search(q.data(), bad), ct3::Error);
}

TEST(Retriever, ConcurrentSearchesAreBatchedAndEqualSerialAnswers) {
    const int64_t n = 2000, d = 32, threads = 8, per_thread = 10;
    MemoryKb kb(random_unit_rows(n, d, 51), d);
    ct3::kb::Retriever retriever(kb, {64, 500});
    const auto queries = random_unit_rows(threads * per_thread, d, 52);
    std::vector<std::vector<ct3::kb::Hit>> serial(size_t(threads * per_thread));
    for (int64_t i = 0; i < threads * per_thread; ++i) serial[size_t(i)] = retriever.search(&queries[size_t(i * d)], {});
    const auto calls_before = retriever.stats().faiss_calls;
    std::vector<std::vector<ct3::kb::Hit>> parallel(serial.size());
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int64_t i = t * per_thread; i < (t + 1) * per_thread; ++i)
                parallel[size_t(i)] = retriever.search(&queries[size_t(i * d)], {});
        });
    for (auto & th : pool) th.join();
    for (size_t i = 0; i < serial.size(); ++i) {
        ASSERT_EQ(serial[i].size(), parallel[i].size());
        for (size_t j = 0; j < serial[i].size(); ++j) EXPECT_EQ(serial[i][j].id, parallel[i][j].id);
    }
    const auto stats = retriever.stats();
    EXPECT_EQ(stats.queries, 2 * threads * per_thread);
    EXPECT_LT(stats.faiss_calls - calls_before, threads * per_thread) << "concurrent queries share FAISS calls";
}

}  // namespace
