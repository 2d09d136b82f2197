// Checkpoints of a pretraining run (<run>/checkpoint/): the fp32 model, the AdamW state, the RNG
// states and the data position, written so that a kill at any moment leaves a complete checkpoint
// (the new one is written beside the old and swapped in by renames) and a resume continues the
// uninterrupted run exactly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/train_options.h"

namespace torch::nn {
class Module;
}

namespace ct3 {
class AdamW;
}

namespace ct3::pretrain {

class PackedLoader;

struct CheckpointState {
    TrainOptions options;  // as the run was started (train_options.json)
    int64_t step = 0, tokens = 0;
    double elapsed_s = 0;
    nlohmann::json loader;  // PackedLoader state
};

// Writes <run>/config.json (Hugging Face layout; a TTT model's is ct3's "model_type": "ttt") and
// <run>/train_options.json for a new run.
void write_run_files(const std::filesystem::path & run_dir, const PretrainModelConfig & config,
                     const TrainOptions & options);
// Refuses (naming the field) a model config that differs from the run's config.json.
void check_same_model(const std::filesystem::path & run_dir, const PretrainModelConfig & config);

// The state of the run's checkpoint, or nullopt when it has none.
std::optional<CheckpointState> load_checkpoint_state(const std::filesystem::path & run_dir);
void restore_checkpoint(const std::filesystem::path & run_dir, const CheckpointState & state,
                        torch::nn::Module & model, AdamW & optimizer, PackedLoader & loader,
                        const c10::Device & device);
void save_checkpoint(const std::filesystem::path & run_dir, const CheckpointState & state,
                     torch::nn::Module & model, const AdamW & optimizer, const PackedLoader & loader,
                     const c10::Device & device);
// Removes the checkpoint, the run files and the log (for --restart).
void discard_checkpoint(const std::filesystem::path & run_dir);

}  // namespace ct3::pretrain
