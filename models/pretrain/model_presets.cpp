#include "models/pretrain/model_presets.h"

#include <algorithm>

#include "models/error.h"
#include "models/model_shapes.h"
#include "models/pretrain/token_shards.h"

namespace ct3::pretrain {

namespace {

struct Preset {
    const char * name;
    int64_t hidden, intermediate, layers, heads, kv_heads;
    int64_t max_positions;
};

// ct3-tiny: the largest shape whose bf16 weights stay under 32 MB with an 8k vocabulary (13.8M
// parameters, tied embeddings); head_dim 64 as Llama. "test" trains in seconds on a CPU.
const Preset kPresets[] = {
    {"ct3-tiny", 384, 1024, 6, 6, 6, 512},
    {"test", 64, 176, 2, 4, 2, 256},
};

}  // namespace

std::string model_preset_names() {
    std::string names;
    for (const Preset & p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
    return names + ", " + random_llama_shapes();
}

LlamaConfig model_preset(const std::string & name, const ModelOverrides & o, const ShardManifest & data,
                         int64_t seq_len) {
    LlamaConfig c;
    const Preset * preset = nullptr;
    for (const Preset & p : kPresets) {
        if (name == p.name) preset = &p;
    }
    if (preset) {
        c.hidden_size = preset->hidden;
        c.intermediate_size = preset->intermediate;
        c.num_hidden_layers = preset->layers;
        c.num_attention_heads = preset->heads;
        c.num_key_value_heads = preset->kv_heads;
        c.max_position_embeddings = preset->max_positions;
        c.rope.theta = 10000.0;
        c.tie_word_embeddings = true;
        c.rms_norm_eps = 1e-5;
    } else {
        try {
            c = llama_shape_config(name);
        } catch (const Error &) {
            fail(ErrorKind::invalid_argument, "--preset '{}' is unknown (expected one of: {})", name,
                 model_preset_names());
        }
    }
    if (o.hidden_size > 0) c.hidden_size = o.hidden_size;
    if (o.intermediate_size > 0) c.intermediate_size = o.intermediate_size;
    if (o.num_hidden_layers > 0) c.num_hidden_layers = o.num_hidden_layers;
    if (o.num_attention_heads > 0) c.num_attention_heads = o.num_attention_heads;
    c.num_key_value_heads = o.num_key_value_heads > 0 ? o.num_key_value_heads
                            : o.num_attention_heads > 0 ? o.num_attention_heads
                                                        : c.num_key_value_heads;
    CT3_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0, ErrorKind::invalid_argument,
              "--hidden_size {} must be a multiple of --num_attention_heads {}", c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
    c.max_position_embeddings = std::max(c.max_position_embeddings, seq_len);
    c.vocab_size = data.vocab_size;
    c.bos_token_id = data.bos_id;
    c.eos_token_ids.clear();
    if (data.eos_id >= 0) c.eos_token_ids.push_back(data.eos_id);
    c.model_type = "llama";
    c.architecture = "LlamaForCausalLM";
    c.dtype = "float32";
    c.validate("--preset " + name);
    return c;
}

}  // namespace ct3::pretrain
