// Options of a pretraining run, the learning-rate schedule, and the check that a resumed run uses
// the options it was started with (a resumed run must continue the same computation exactly).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace ct3::pretrain {

struct TrainOptions {
    // Data: token shard manifests written by tokenize_corpus (<prefix>.json).
    std::filesystem::path train_data, held_out_data;
    int64_t seq_len = 512;
    int64_t micro_batch = 16;  // sequences per forward/backward
    int64_t grad_accum = 1;    // micro-batches per optimizer step (global batch = micro_batch * grad_accum * world)
    int64_t max_steps = 1000;
    int64_t warmup_steps = 100;
    double lr = 1e-3;
    double min_lr_ratio = 0.1;  // cosine decays to lr * min_lr_ratio at max_steps
    double weight_decay = 0.1;  // on matrices and embeddings; never on norms
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
    double grad_clip = 1.0;
    int64_t eval_every = 200;    // steps; 0 = only at the end
    int64_t eval_batches = 20;   // held-out micro-batches per evaluation (0 = the whole held-out set)
    int64_t checkpoint_every = 500;  // 0 = only at the end (and on a signal); -1 = never (benchmarks)
    int64_t log_every = 10;
    uint64_t seed = 1234;
    std::string device = "auto";  // auto | cpu | cuda | cuda:N
    std::string precision = "auto";  // auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    double peak_tflops = 989.0;   // for model FLOPs utilisation: H100/H200 SXM dense bf16 (per GPU)
    // Data-parallel processes. Not a flag: train() sets it from the environment (WORLD_SIZE, see
    // distributed.h); it is recorded so that a resume with another world size (another global
    // batch) is refused.
    int64_t world_size = 1;

    // The tokens one optimizer step consumes on all processes together (the global batch).
    int64_t tokens_per_step() const { return micro_batch * grad_accum * seq_len * world_size; }
    // Throws invalid_argument naming the option when a value is out of range.
    void validate() const;
};

nlohmann::json to_json(const TrainOptions & o);
TrainOptions train_options_from_json(const nlohmann::json & j, const std::string & source);

// Options that change the computation: resuming with a different value is refused (naming it and
// both values). Logging, evaluation and checkpoint cadence, device and max_steps may change (a larger
// max_steps stretches the cosine, which is then no longer the uninterrupted run's: logged as a warning).
void check_resumable(const TrainOptions & saved, const TrainOptions & now, const std::string & source);

// Linear warmup from lr/warmup to lr over warmup_steps, then cosine decay to lr*min_lr_ratio at
// max_steps (nanoGPT/llm.c). `step` counts from 0.
double learning_rate_at(const TrainOptions & o, int64_t step);

}  // namespace ct3::pretrain
