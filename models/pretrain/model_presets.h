// Named model shapes for ct3-pretrain train --preset: the shipped ct3-tiny, a tiny shape for tests,
// and public checkpoints' shapes (for throughput benchmarks), with per-flag overrides. The vocabulary
// size and special ids always come from the token data, so a preset fits any tokenizer.
#pragma once

#include <cstdint>
#include <string>

#include "models/llama_config.h"

namespace ct3::pretrain {

struct ShardManifest;

// Flags that override a preset's value when > 0.
struct ModelOverrides {
    int64_t hidden_size = 0, num_hidden_layers = 0, num_attention_heads = 0, num_key_value_heads = 0,
            intermediate_size = 0;
};

// The preset's config with `data`'s vocab size and BOS/EOS ids and max_position_embeddings =
// max(seq_len, the preset's). Throws invalid_argument naming --preset and the choices.
LlamaConfig model_preset(const std::string & name, const ModelOverrides & overrides, const ShardManifest & data,
                         int64_t seq_len);
std::string model_preset_names();

}  // namespace ct3::pretrain
