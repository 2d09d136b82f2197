#include "models/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "models/error.h"

namespace ct3 {

static constexpr float k_removed = -std::numeric_limits<float>::infinity();

void SamplingParams::validate() const {
    CT3_CHECK(std::isfinite(temperature) && temperature >= 0.0f, ErrorKind::invalid_argument,
              "--temp must be a finite number >= 0 (0 = greedy), got {}", temperature);
    CT3_CHECK(top_k >= 0, ErrorKind::invalid_argument, "--top-k must be >= 0 (0 = off), got {}", top_k);
    CT3_CHECK(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f, ErrorKind::invalid_argument,
              "--top-p must be in (0, 1] (1 = off), got {}", top_p);
    CT3_CHECK(std::isfinite(min_p) && min_p >= 0.0f && min_p <= 1.0f, ErrorKind::invalid_argument,
              "--min-p must be in [0, 1] (0 = off), got {}", min_p);
    CT3_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f, ErrorKind::invalid_argument,
              "--repeat-penalty must be a finite number > 0 (1 = off), got {}", repetition_penalty);
    CT3_CHECK(seed >= -1, ErrorKind::invalid_argument, "--seed must be >= 0, or -1 for a random seed, got {}", seed);
}

Sampler::Sampler(const SamplingParams & params) : params_(params) {
    params_.validate();
    if (params_.seed == -1) {
        std::random_device device;
        seed_ = (static_cast<uint64_t>(device()) << 32) ^ device();
    } else {
        seed_ = static_cast<uint64_t>(params_.seed);
    }
    rng_.seed(seed_);
}

double Sampler::next_uniform() {
    // std::uniform_real_distribution is implementation-defined; this is the same everywhere.
    return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

// Rejects rows that cannot be sampled from; a NaN usually means the model diverged (e.g. fp16 overflow).
static void check_row(const std::vector<float> & logits) {
    CT3_CHECK(!logits.empty(), ErrorKind::invalid_argument, "sampler: logits row is empty");
    bool any_finite_or_pos_inf = false;
    for (size_t i = 0; i < logits.size(); ++i) {
        CT3_CHECK(!std::isnan(logits[i]), ErrorKind::invalid_argument,
                  "sampler: logits contain NaN (first at id {}); the model output is invalid", i);
        if (logits[i] != k_removed) any_finite_or_pos_inf = true;
    }
    CT3_CHECK(any_finite_or_pos_inf, ErrorKind::invalid_argument,
              "sampler: every logit is -inf; there is no token to choose");
}

int32_t argmax(const std::vector<float> & logits) {
    CT3_CHECK(!logits.empty(), ErrorKind::invalid_argument, "argmax: logits row is empty");
    size_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i) {
        if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins ties
    }
    return static_cast<int32_t>(best);
}

std::vector<double> softmax(const std::vector<float> & logits) {
    std::vector<double> probs(logits.size(), 0.0);
    if (logits.empty()) return probs;
    const float max_value = logits[argmax(logits)];
    CT3_CHECK(max_value != k_removed, ErrorKind::invalid_argument, "softmax: every logit is -inf");
    double sum = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
        double p;
        if (std::isinf(max_value)) p = logits[i] == max_value ? 1.0 : 0.0;  // +inf entries share the mass
        else p = logits[i] == k_removed ? 0.0 : std::exp(static_cast<double>(logits[i]) - max_value);
        probs[i] = p;
        sum += p;
    }
    for (double & p : probs) p /= sum;
    return probs;
}

void apply_repetition_penalty(std::vector<float> & logits, const std::vector<int32_t> & context, float penalty) {
    if (penalty == 1.0f) return;
    // Each id is penalised once however often it occurs (HF gathers, then scatters, unique positions).
    std::vector<bool> seen(logits.size(), false);
    for (int32_t id : context) {
        if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[id]) continue;
        seen[id] = true;
        float & l = logits[id];
        l = l > 0.0f ? l / penalty : l * penalty;
    }
}

void apply_top_k(std::vector<float> & logits, int top_k) {
    if (top_k <= 0 || static_cast<size_t>(top_k) >= logits.size()) return;
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
    const float threshold = sorted[top_k - 1];
    // Like HF, ids tied with the k-th value are kept too.
    for (float & l : logits) {
        if (l < threshold) l = k_removed;
    }
}

// Ids with non-zero probability ordered by descending probability, lower id first among equals
// (deterministic). Ids already removed are left out: after top-k that makes the sort k long, not vocab long.
static std::vector<int32_t> order_by_prob(const std::vector<double> & probs) {
    std::vector<int32_t> order;
    for (size_t i = 0; i < probs.size(); ++i)
        if (probs[i] > 0.0) order.push_back(static_cast<int32_t>(i));
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
    return order;
}

void apply_top_p(std::vector<float> & logits, float top_p) {
    if (top_p >= 1.0f || logits.empty()) return;
    const std::vector<double> probs = softmax(logits);
    const std::vector<int32_t> order = order_by_prob(probs);
    // Keep an id while the mass of the ids before it is still below top_p: the smallest set whose
    // cumulative probability reaches top_p (HF TopPLogitsWarper), never fewer than one id.
    double before = 0.0;
    for (size_t rank = 0; rank < order.size(); ++rank) {
        const int32_t id = order[rank];
        if (rank > 0 && before >= top_p) logits[id] = k_removed;
        before += probs[id];
    }
}

void apply_min_p(std::vector<float> & logits, float min_p) {
    if (min_p <= 0.0f || logits.empty()) return;
    const std::vector<double> probs = softmax(logits);
    const double top = *std::max_element(probs.begin(), probs.end());
    const double threshold = static_cast<double>(min_p) * top;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (probs[i] < threshold) logits[i] = k_removed;  // the top id always survives: min_p <= 1
    }
}

int32_t Sampler::sample(const at::Tensor & logits, const std::vector<int32_t> & context) {
    CT3_CHECK(logits.defined() && logits.dim() == 1, ErrorKind::invalid_argument,
              "sampler: expected a logits row of shape [vocab], got {} dims", logits.defined() ? logits.dim() : 0);
    at::Tensor row = logits.to(at::kCPU, at::kFloat).contiguous();
    const float * data = row.data_ptr<float>();
    return sample(std::vector<float>(data, data + row.numel()), context);
}

int32_t Sampler::sample(std::vector<float> logits, const std::vector<int32_t> & context) {
    check_row(logits);
    apply_repetition_penalty(logits, context, params_.repetition_penalty);
    if (is_greedy()) return argmax(logits);

    if (params_.temperature != 1.0f) {
        for (float & l : logits) l /= params_.temperature;
    }
    apply_top_k(logits, params_.top_k);
    apply_top_p(logits, params_.top_p);
    apply_min_p(logits, params_.min_p);

    const std::vector<double> probs = softmax(logits);
    const double u = next_uniform();
    double cumulative = 0.0;
    int32_t last_nonzero = argmax(logits);
    for (size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] <= 0.0) continue;
        cumulative += probs[i];
        last_nonzero = static_cast<int32_t>(i);
        if (u < cumulative) return static_cast<int32_t>(i);
    }
    return last_nonzero;  // rounding left u just above the total mass
}

}  // namespace ct3
