// The model a pretraining run trains (ct3-pretrain train --backbone): the Transformer (a Llama) or a
// TTT-Linear / TTT-MLP language model (models/ttt_model.h) of the same sizes, vocabulary and special
// ids. The trainer sees only a torch::nn::Module (parameters, train/eval, device) that is also a
// CausalLM (forward_tokens), so both train through the same loop, checkpoints and export.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "models/causal_lm.h"
#include "models/llama_config.h"
#include "models/ttt_model.h"

namespace torch::nn {
class Module;
}

namespace ct3::pretrain {

struct PretrainModelConfig {
    LlamaConfig llama;                  // the Transformer (when ttt is empty)
    std::optional<TTTModelConfig> ttt;  // a TTT backbone

    PretrainModelConfig() = default;
    PretrainModelConfig(const LlamaConfig & transformer) : llama(transformer) {}  // NOLINT: implicit on purpose
    explicit PretrainModelConfig(const TTTModelConfig & ttt_model) : ttt(ttt_model) {}

    bool is_ttt() const { return ttt.has_value(); }
    // The run's and the export's config.json (Hugging Face Llama config or ct3's TTT config).
    nlohmann::json config_json(const std::string & dtype) const;
    // Reads a config.json of either kind (dispatch on model_type); errors name `source` and the field.
    static PretrainModelConfig from_json(const nlohmann::json & j, const std::string & source);
    int64_t vocab_size() const;
    int64_t max_position_embeddings() const;
    int32_t bos_token_id() const;
    const std::vector<int32_t> & eos_token_ids() const;
    void validate(const std::string & source) const;
    std::string describe() const;  // "transformer" | "ttt-linear (mamba)" ...
};

// --backbone transformer | ttt-linear | ttt-mlp and --backbone_style mamba | llama: the TTT model takes
// the Transformer config's hidden size, layers, heads, SwiGLU size, vocabulary, special ids and
// context, with the reference's TTT defaults (mini-batch 16, ttt_base_lr 1.0 linear / 0.1 mlp).
// Throws invalid_argument naming the flag and the choices.
// The TTT-layer settings of `ct3-pretrain train --ttt_*` (the paper's Table 1 ablation switches);
// the defaults are the reference layer. Non-default values with --backbone transformer are refused.
struct TTTLayerOptions {
    int64_t mini_batch_size = 16;  // b; b = seq_len is batch GD over the whole context
    double base_lr = 0.0;          // η_base; 0 = the reference scripts' (1.0 linear, 0.1 mlp)
    bool inner_norm = true;
    bool learnable_lr = true;
    bool learnable_w0 = true;
    bool is_default() const {
        return mini_batch_size == 16 && base_lr == 0.0 && inner_norm && learnable_lr && learnable_w0;
    }
};

PretrainModelConfig pretrain_model_config(const LlamaConfig & sizes, const std::string & backbone,
                                          const std::string & backbone_style,
                                          const TTTLayerOptions & ttt = TTTLayerOptions());

// One model object seen two ways; `module` and `lm` share ownership of it.
struct PretrainModel {
    std::shared_ptr<torch::nn::Module> module;
    std::shared_ptr<CausalLM> lm;
};
// Freshly initialised (from the current torch seed), float32, on the CPU.
PretrainModel build_pretrain_model(const PretrainModelConfig & config);

// Model FLOPs per trained token (forward + backward) for MFU: the Transformer's PaLM formula, and for
// TTT 6 × the matmul parameters plus the inner loop's dual-form matmuls per token (approximate).
double model_flops_per_token(const PretrainModelConfig & config, int64_t seq_len);

}  // namespace ct3::pretrain
