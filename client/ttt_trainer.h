// Test-time training: fine-tunes a LoRA adapter on a query's retrieved neighbours exactly as the
// original CT3 (`TTTModel.fine_tune`): fresh AdamW per query, whole-text causal loss plus EOS,
// gradient-norm clipping, N epochs over the samples, optional seeded shuffling and per-sample loss
// weights (kept aligned with their samples when shuffled, unlike the original).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "client/lora.h"

namespace ct3 {
class CausalLM;
class Tokenizer;
}  // namespace ct3

namespace ct3::client {

struct TTTOptions {
    int num_epochs = 2;             // --num_epochs
    double learning_rate = 5e-5;    // --learning_rate
    double weight_decay = 0.01;     // AdamW (torch defaults otherwise)
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double max_grad_norm = 1.0;     // clip_grad_norm_; <= 0 disables
    int batch_size = 1;             // --batch_size (> 1 pads right with EOS, labels -100)
    bool shuffle = false;           // --shuffle_ttt_samples
    uint64_t seed = 0;              // shuffling (and dropout masks)
    int max_length = 1024;          // --max_length: tokens per sample, BOS and EOS included
    int pad_to_multiple_of = 8;     // DataCollatorForSeq2Seq(pad_to_multiple_of=8)
    bool weighted = false;          // --weighted_sample_training: loss * w_i * n

    void validate() const;          // invalid_argument naming the flag
};

// One tokenized training text and its loss weight (1 unless weighted training).
struct TrainSample {
    std::vector<int32_t> ids;
    double weight = 1.0;
};

// As the original `tokenize`: the tokenizer's special tokens (BOS), truncation at max_length, and an
// EOS appended when the text was not cut and does not already end with it.
std::vector<int32_t> tokenize_training_text(const Tokenizer & tokenizer, const std::string & text, int max_length,
                                            int32_t eos_id);

// Right-padded batch: pad with `pad_id` to a multiple of `multiple`, attention 0 and labels -100 there.
struct TrainBatch {
    at::Tensor input_ids, attention_mask, labels;  // [B, T] int64 on the CPU
    std::vector<double> weights;                   // per row
};
TrainBatch collate(const std::vector<const TrainSample *> & rows, int32_t pad_id, int pad_to_multiple_of);

// Indices kept by --data_reduction: score > min(mean, median) (strictly; all equal keeps none).
std::vector<size_t> reduce_by_score(const std::vector<double> & scores);
// w_i = s_i / sum(s); uniform when the sum is not positive or not finite.
std::vector<double> score_weights(const std::vector<double> & scores);

struct TrainReport {
    std::vector<double> losses;  // per optimizer step (the unweighted mean loss of the batch)
    int steps = 0;
    int64_t tokens = 0;          // non-padding tokens seen
    double seconds = 0.0;
};

// Called after each step (step index from 0, total steps, loss); return false to stop early.
using StepCallback = std::function<bool(int step, int total, double loss)>;

// Trains `adapter` (already in its starting state) on `samples` with `model` (which carries it).
// Leaves the adapter in eval mode. Throws invalid_argument for an empty sample or bad options.
TrainReport fine_tune(CausalLM & model, LoraAdapter & adapter, const std::vector<TrainSample> & samples,
                      int32_t pad_id, const TTTOptions & options, const StepCallback & on_step = {});

}  // namespace ct3::client
