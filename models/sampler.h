// Next-token selection from one row of logits: greedy argmax or seeded sampling with the
// Hugging Face processor order (repetition penalty -> temperature -> top-k -> top-p -> min-p).
//
// The random stream is a std::mt19937_64 owned by the Sampler, so a given seed reproduces the same
// tokens regardless of torch's global RNG, the device the model runs on, or other threads.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ct3 {

struct SamplingParams {
    float temperature = 0.0f;         // --temp: 0 = greedy (argmax), otherwise logits / temperature
    int top_k = 0;                    // --top-k: keep the k most likely ids; 0 = off
    float top_p = 1.0f;               // --top-p: keep the smallest set with cumulative prob >= top_p; 1 = off
    float min_p = 0.0f;               // --min-p: drop ids with prob < min_p * max prob; 0 = off
    float repetition_penalty = 1.0f;  // --repeat-penalty: HF semantics over the ids of the context; 1 = off
    int64_t seed = -1;                // --seed: -1 = random (std::random_device)

    // Throws ct3::Error(invalid_argument) naming the flag (--temp, --top-k, ...) of the first bad value.
    void validate() const;
};

class Sampler {
public:
    // Validates `params`; draws a random seed from std::random_device when params.seed == -1.
    explicit Sampler(const SamplingParams & params);

    // Picks the next id from logits [vocab] (any float dtype, any device; copied to CPU float32).
    // `context` holds the ids seen so far (prompt + generated) for the repetition penalty; ids outside
    // [0, vocab) are ignored there. Throws ct3::Error when the row is empty, has a NaN, or has no
    // finite value.
    int32_t sample(const at::Tensor & logits, const std::vector<int32_t> & context);
    int32_t sample(std::vector<float> logits, const std::vector<int32_t> & context);

    // The seed actually in use (the drawn one when params.seed was -1), for logging and replay.
    uint64_t seed() const { return seed_; }
    const SamplingParams & params() const { return params_; }
    bool is_greedy() const { return params_.temperature == 0.0f; }

private:
    double next_uniform();  // in [0, 1), 53 random bits: same values on every standard library

    SamplingParams params_;
    uint64_t seed_ = 0;
    std::mt19937_64 rng_;
};

// The processing steps, exposed for tests and for callers that want probabilities rather than a draw.
// Each works in place on a logits vector; removed ids are set to -infinity.
void apply_repetition_penalty(std::vector<float> & logits, const std::vector<int32_t> & context, float penalty);
void apply_top_k(std::vector<float> & logits, int top_k);
void apply_top_p(std::vector<float> & logits, float top_p);
void apply_min_p(std::vector<float> & logits, float min_p);

// Softmax in double precision (removed ids get probability 0). Requires at least one finite logit.
std::vector<double> softmax(const std::vector<float> & logits);

// Index of the largest value, lowest index on ties (like torch.argmax). Requires a non-empty row.
int32_t argmax(const std::vector<float> & logits);

}  // namespace ct3
