// The pretraining loop of a causal LM (a Llama-architecture Transformer or a TTT backbone,
// pretrain_model.h): packed token windows, AdamW with warmup +
// cosine decay, gradient clipping and accumulation, bf16 autocast on CUDA (fp32 master weights),
// periodic held-out loss and bits-per-byte, checkpoints that resume exactly, a JSONL/CSV log and an
// SVG loss plot, all in one run folder:
//
//   <run>/config.json         the model (Hugging Face config)
//   <run>/train_options.json  the options the run was started with (a resume must match them)
//   <run>/checkpoint/         model.safetensors (fp32), optimizer.safetensors, state.json
//   <run>/train_log.{jsonl,csv}, <run>/loss.svg
//
// A run killed at any moment resumes from its last checkpoint when started again with the same
// options, and the resumed steps equal the uninterrupted run's (same data order, same optimizer state,
// same RNG); SIGINT/SIGTERM write a checkpoint before exiting.
//
// Data parallel (distributed.h): with WORLD_SIZE > 1 in the environment train() is one rank of a
// job (gloo on CPU, nccl on cuda:LOCAL_RANK). The global batch is micro_batch * grad_accum *
// world_size, rank r trains on rows r, r+W, ... of it, the gradients are averaged once per optimizer
// step (before clipping), so the run equals one process with the same global batch up to float
// summation order. The logged loss is averaged over ranks, token counts are global, evaluation is
// split over ranks and all-reduced. Only rank 0 writes the run folder (run files, log, plot,
// checkpoints; the others wait at a barrier after a checkpoint) and sees on_step; every rank
// resumes from the same checkpoint. A signal on any rank stops all ranks at the next log point
// (checkpoint written). A resume must use the same number of processes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "models/llama_config.h"
#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/train_options.h"

namespace ct3::pretrain {

struct StepReport {
    int64_t step = 0, max_steps = 0;
    double loss = 0, lr = 0, tokens_per_s = 0, elapsed_s = 0;
    bool eval = false;  // an evaluation row (loss = held-out loss)
    double bits_per_byte = 0;
};

struct TrainResult {
    int64_t steps = 0;      // optimizer steps done in total (including before a resume)
    int64_t tokens = 0;     // training tokens consumed in total
    double elapsed_s = 0;   // training wall time in total
    double final_train_loss = 0, final_eval_loss = 0, final_eval_bits_per_byte = 0;
    bool interrupted = false;  // stopped by a signal (checkpoint written)
};

// The model trained by `options` in `run_dir`: starts from `model_config` with random weights (seeded by
// options.seed) or resumes the run's checkpoint; `restart` discards an existing run. `on_step` (may be
// empty) sees every logged step and evaluation, for progress display.
TrainResult train(const PretrainModelConfig & model_config, const TrainOptions & options,
                  const std::filesystem::path & run_dir, bool restart,
                  const std::function<void(const StepReport &)> & on_step = {});

// Model FLOPs per trained token (forward + backward), PaLM appendix B: 6 * (non-embedding parameters
// + the output projection) + 12 * layers * hidden * seq_len for attention.
double flops_per_token(const LlamaConfig & config, int64_t seq_len);

}  // namespace ct3::pretrain
