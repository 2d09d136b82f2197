// Sampler on synthetic logits: each processing step against hand-computed values, and the full
// sampling path checked statistically (5000 draws with a fixed seed) against renormalised probabilities.
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include <torch/torch.h>

#include "models/error.h"
#include "models/sampler.h"
#include "tests/test_support.h"

namespace {

constexpr int k_draws = 5000;
constexpr float k_neg_inf = -std::numeric_limits<float>::infinity();

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> logits_of(const std::vector<double> & probs) {
    std::vector<float> logits;
    for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
    return logits;
}

std::map<int32_t, double> frequencies(ct3::Sampler & sampler, const std::vector<float> & logits, int draws = k_draws) {
    std::map<int32_t, double> counts;
    for (int i = 0; i < draws; ++i) counts[sampler.sample(logits, {})] += 1.0 / draws;
    return counts;
}

ct3::SamplingParams sampling(float temperature, int64_t seed) {
    ct3::SamplingParams p;
    p.temperature = temperature;
    p.seed = seed;
    return p;
}

std::string error_of(const ct3::SamplingParams & p) {
    try {
        p.validate();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::invalid_argument);
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
    ct3::Sampler greedy(sampling(0.0f, 1));
    EXPECT_TRUE(greedy.is_greedy());
    EXPECT_EQ(greedy.sample(std::vector<float>{0.1f, 2.0f, -1.0f, 1.9f}, {}), 1);
    EXPECT_EQ(greedy.sample(std::vector<float>{0.5f, 3.0f, 3.0f, 3.0f}, {}), 1);
    EXPECT_EQ(greedy.sample(std::vector<float>{k_neg_inf, k_neg_inf, -50.0f}, {}), 2);
    EXPECT_EQ(ct3::argmax({7.0f}), 0);
}

TEST(Sampler, TensorInputMatchesVectorInput) {
    torch::manual_seed(3);
    at::Tensor row = torch::randn({50});
    ct3::Sampler greedy(sampling(0.0f, 1));
    EXPECT_EQ(greedy.sample(row, {}), row.argmax().item<int64_t>());
    EXPECT_EQ(greedy.sample(row.to(torch::kBFloat16), {}), row.to(torch::kBFloat16).to(torch::kFloat).argmax().item<int64_t>());
    EXPECT_THROW(greedy.sample(torch::zeros({2, 3}), {}), ct3::Error);
}

TEST(Sampler, TopKOneEqualsGreedy) {
    std::mt19937 gen(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    ct3::SamplingParams p = sampling(1.3f, 99);
    p.top_k = 1;
    ct3::Sampler top1(p);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<float> logits(64);
        for (float & l : logits) l = normal(gen);
        ASSERT_EQ(top1.sample(logits, {}), ct3::argmax(logits));
    }
}

TEST(Sampler, TopKKeepsTheKLargestAndTies) {
    std::vector<float> logits = {1.0f, 5.0f, 3.0f, 3.0f, 0.0f};
    ct3::apply_top_k(logits, 2);  // threshold is the 2nd value (3.0); both 3.0 entries survive
    EXPECT_EQ(logits, (std::vector<float>{k_neg_inf, 5.0f, 3.0f, 3.0f, k_neg_inf}));
    std::vector<float> unchanged = {1.0f, 2.0f};
    ct3::apply_top_k(unchanged, 10);
    EXPECT_EQ(unchanged, (std::vector<float>{1.0f, 2.0f}));
}

TEST(Sampler, TopPKeepsSmallestSetReachingTheMass) {
    const std::vector<double> probs = {0.10, 0.50, 0.15, 0.25};
    auto kept = [&](float top_p) {
        std::vector<float> logits = logits_of(probs);
        ct3::apply_top_p(logits, top_p);
        std::vector<int32_t> ids;
        for (size_t i = 0; i < logits.size(); ++i)
            if (logits[i] != k_neg_inf) ids.push_back(static_cast<int32_t>(i));
        return ids;
    };
    EXPECT_EQ(kept(0.3f), (std::vector<int32_t>{1}));          // 0.50 alone reaches 0.3
    EXPECT_EQ(kept(0.7f), (std::vector<int32_t>{1, 3}));       // 0.50 + 0.25 = 0.75 >= 0.7
    EXPECT_EQ(kept(0.8f), (std::vector<int32_t>{1, 2, 3}));    // 0.90 >= 0.8
    EXPECT_EQ(kept(0.01f), (std::vector<int32_t>{1}));         // never fewer than one
    EXPECT_EQ(kept(1.0f), (std::vector<int32_t>{0, 1, 2, 3}));  // off
}

TEST(Sampler, TopPSamplesOnlyAllowedIdsWithRenormalisedFrequencies) {
    ct3::SamplingParams p = sampling(1.0f, 1234);
    p.top_p = 0.7f;
    ct3::Sampler sampler(p);
    const auto freq = frequencies(sampler, logits_of({0.10, 0.50, 0.15, 0.25}));
    ASSERT_EQ(freq.size(), 2u) << "only ids 1 and 3 may appear";
    ASSERT_TRUE(freq.count(1) && freq.count(3));
    EXPECT_NEAR(freq.at(1), 0.50 / 0.75, 0.03);
    EXPECT_NEAR(freq.at(3), 0.25 / 0.75, 0.03);
}

TEST(Sampler, PlainSamplingMatchesSoftmax) {
    ct3::Sampler sampler(sampling(1.0f, 5));
    const std::vector<double> probs = {0.05, 0.6, 0.1, 0.25};
    const auto freq = frequencies(sampler, logits_of(probs));
    for (int32_t id = 0; id < 4; ++id) EXPECT_NEAR(freq.count(id) ? freq.at(id) : 0.0, probs[id], 0.03) << id;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
    const std::vector<float> logits = {1.0f, 0.0f};
    auto p0 = [](double t) { return 1.0 / (1.0 + std::exp(-1.0 / t)); };
    std::vector<double> measured;
    for (float t : {0.5f, 1.0f, 2.0f}) {
        ct3::Sampler sampler(sampling(t, 77));
        const auto freq = frequencies(sampler, logits);
        const double f0 = freq.count(0) ? freq.at(0) : 0.0;
        EXPECT_NEAR(f0, p0(t), 0.03) << "temperature " << t;
        measured.push_back(f0);
    }
    EXPECT_GT(measured[0], measured[1] + 0.05);  // T=0.5 sharper than T=1
    EXPECT_GT(measured[1], measured[2] + 0.05);  // T=2 flatter than T=1
}

TEST(Sampler, MinPDropsUnlikelyIds) {
    std::vector<float> logits = logits_of({0.5, 0.3, 0.15, 0.05});
    ct3::apply_min_p(logits, 0.2f);  // threshold 0.1
    EXPECT_NE(logits[2], k_neg_inf);
    EXPECT_EQ(logits[3], k_neg_inf);
    ct3::apply_min_p(logits, 1.0f);  // only the top id survives
    EXPECT_NE(logits[0], k_neg_inf);
    EXPECT_EQ(logits[1], k_neg_inf);
    EXPECT_EQ(logits[2], k_neg_inf);
}

TEST(Sampler, RepetitionPenaltyHandCases) {
    std::vector<float> logits = {2.0f, -2.0f, 0.5f, 3.0f, 0.0f};
    // id 1 occurs twice but is penalised once; out-of-range ids are ignored.
    ct3::apply_repetition_penalty(logits, {0, 1, 1, 4, 99, -5}, 2.0f);
    EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 0.5f, 3.0f, 0.0f}));

    std::vector<float> rewarded = {2.0f, -2.0f};
    ct3::apply_repetition_penalty(rewarded, {0, 1}, 0.5f);  // < 1 favours repeats
    EXPECT_EQ(rewarded, (std::vector<float>{4.0f, -1.0f}));

    // Greedy decoding applies it too (as HF does): 3.0 / 1.5 = 2.0 < 2.9.
    ct3::SamplingParams p = sampling(0.0f, 1);
    p.repetition_penalty = 1.5f;
    ct3::Sampler greedy(p);
    EXPECT_EQ(greedy.sample(std::vector<float>{3.0f, 2.9f}, {0}), 1);
    EXPECT_EQ(greedy.sample(std::vector<float>{3.0f, 2.9f}, {}), 0);
}

TEST(Sampler, SeedDeterminesTheSequence) {
    std::vector<float> logits(100);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(i * 0.37) * 2.0);
    auto draw = [&](int64_t seed) {
        ct3::SamplingParams p = sampling(1.0f, seed);
        p.top_k = 40;
        p.top_p = 0.95f;
        ct3::Sampler sampler(p);
        std::vector<int32_t> ids;
        for (int i = 0; i < 64; ++i) ids.push_back(sampler.sample(logits, {}));
        return ids;
    };
    torch::manual_seed(0);
    const auto a = draw(42);
    torch::manual_seed(1);  // torch's global RNG must not matter
    const auto b = draw(42);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, draw(43));

    ct3::Sampler r1(sampling(1.0f, -1)), r2(sampling(1.0f, -1));
    EXPECT_NE(r1.seed(), r2.seed());
    EXPECT_EQ(ct3::Sampler(sampling(1.0f, 9)).seed(), 9u);
}

TEST(Sampler, ValidationNamesTheFlag) {
    ct3::SamplingParams ok;
    EXPECT_EQ(error_of(ok), "");
    ct3::SamplingParams p;
    p.temperature = -0.1f;
    EXPECT_NE(error_of(p).find("--temp"), std::string::npos);
    p = ok;
    p.temperature = std::numeric_limits<float>::quiet_NaN();
    EXPECT_NE(error_of(p).find("--temp"), std::string::npos);
    p = ok;
    p.top_k = -1;
    EXPECT_NE(error_of(p).find("--top-k"), std::string::npos);
    p = ok;
    p.top_p = 0.0f;
    EXPECT_NE(error_of(p).find("--top-p"), std::string::npos);
    p.top_p = 1.5f;
    EXPECT_NE(error_of(p).find("--top-p"), std::string::npos);
    p = ok;
    p.min_p = -0.5f;
    EXPECT_NE(error_of(p).find("--min-p"), std::string::npos);
    p = ok;
    p.repetition_penalty = 0.0f;
    EXPECT_NE(error_of(p).find("--repeat-penalty"), std::string::npos);
    p = ok;
    p.seed = -2;
    EXPECT_NE(error_of(p).find("--seed"), std::string::npos);
    p.seed = -2;
    EXPECT_THROW(ct3::Sampler{p}, ct3::Error);
}

TEST(Sampler, RejectsUnsampleableRows) {
    ct3::Sampler sampler(sampling(1.0f, 1));
    EXPECT_THROW(sampler.sample(std::vector<float>{}, {}), ct3::Error);
    EXPECT_THROW(sampler.sample(std::vector<float>{1.0f, std::nanf("")}, {}), ct3::Error);
    EXPECT_THROW(sampler.sample(std::vector<float>{k_neg_inf, k_neg_inf}, {}), ct3::Error);
    // +inf is a legal (if extreme) logit: it takes all the mass.
    const float inf = std::numeric_limits<float>::infinity();
    for (int i = 0; i < 20; ++i) EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, inf, 1.0f}, {}), 1);
}

TEST(Sampler, TopKRunsBeforeTopP) {
    // HF order: top-k renormalises before top-p. probs {0.4, 0.3, 0.2, 0.1}: top-p 0.5 alone keeps
    // {0, 1} (0.4 < 0.5), but after top-k 2 the renormalised 0.4 / 0.7 = 0.57 already reaches 0.5.
    const std::vector<float> logits = logits_of({0.4, 0.3, 0.2, 0.1});
    ct3::SamplingParams p = sampling(1.0f, 8);
    p.top_p = 0.5f;
    ct3::Sampler top_p_only(p);
    EXPECT_EQ(frequencies(top_p_only, logits, 500).size(), 2u);
    p.top_k = 2;
    ct3::Sampler both(p);
    const auto freq = frequencies(both, logits, 500);
    ASSERT_EQ(freq.size(), 1u);
    EXPECT_EQ(freq.begin()->first, 0);
}
