// Language models built from TTT layers (../shared/reference/ttt_layers.md §2): token embeddings,
// N pre-norm residual blocks, final RMSNorm, tied LM head. Two backbones:
//
//   llama  x += TTT(RMSNorm(x)); x += SwiGLU(RMSNorm(x))            (TTT with separate Wq/Wk/Wv)
//   mamba  x += CausalConv_4(RMSNorm(x))   ("pre_conv")
//          x += TTT(RMSNorm(x))  (shared Wq + conv_q/conv_k, gelu gate); x += SwiGLU(RMSNorm(x))
//
// The named sizes are the reference's *-TTT configs (125m, 350m, 760m, 1.3b; vocab 32000, mini-batch
// 16, ttt_base_lr 1.0 for TTT-Linear and 0.1 for TTT-MLP). Module names follow the reference ttt.py
// (embed_tokens, layers.N.seq_norm / seq_modeling_block / ffn_norm, norm); the SwiGLU MLP uses
// Llama's gate_proj / up_proj / down_proj.
//
// TTTForCausalLM is a CausalLM: generate() decodes it through KVCache::recurrent (a TTTCache holding
// each layer's TTTState and the pre_conv inputs), in chunks of any length starting anywhere in a
// mini-batch, with the same logits as one forward over the whole sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "models/causal_lm.h"
#include "models/llama.h"
#include "models/ttt_layer.h"

namespace ct3 {

struct TTTModelConfig {
    int64_t vocab_size = 32000;
    int64_t hidden_size = 768;
    int64_t num_hidden_layers = 12;
    int64_t num_attention_heads = 12;
    int64_t intermediate_size = 2048;
    int64_t mini_batch_size = 16;
    std::string ttt_layer_type = "linear";  // linear | mlp
    std::string backbone = "mamba";         // mamba | llama
    double ttt_base_lr = 1.0;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    int64_t conv_width = 4;                 // pre_conv, conv_q, conv_k (ttt.py conv_kernel)
    double initializer_range = 0.02;
    // Ablation switches of the TTT layer (TTTConfig; config.json fields of the same names).
    bool inner_norm = true;
    bool learnable_lr = true;
    bool learnable_w0 = true;
    int64_t max_position_embeddings = 2048;  // generation stops here (the recurrence itself has no limit)
    bool tie_word_embeddings = true;         // false: a separate lm_head [vocab, hidden]
    int32_t bos_token_id = 1;                // -1 = none (ttt.py TTTConfig defaults: bos 1, eos 2)
    std::vector<int32_t> eos_token_ids{2};

    // "125m" | "350m" | "760m" | "1.3b" with the layer type and backbone; throws invalid_argument
    // naming the size and the choices.
    static TTTModelConfig named(const std::string & size, const std::string & ttt_layer_type = "linear",
                                const std::string & backbone = "mamba");
    // The reference scripts' inner base learning rate: 1.0 for TTT-Linear, 0.1 for TTT-MLP.
    static double reference_base_lr(const std::string & ttt_layer_type);
    TTTConfig layer_config() const;
    // Throws invalid_argument naming `where` (e.g. the config.json path) and the field.
    void validate(const std::string & where = "TTT model") const;
    // Parameters of the model this config builds, from the shapes alone (no allocation).
    int64_t parameter_count() const;
};

std::vector<std::string> ttt_model_sizes();

// The recurrent state of one block: its TTT layer's state and the last conv_width − 1 inputs of
// pre_conv (mamba backbone; undefined = zeros before the first token).
struct TTTBlockState {
    TTTState ttt;
    at::Tensor pre_conv_history;
};

// What a TTT model keeps in KVCache::recurrent: one TTTBlockState per layer and the tokens seen.
// Constant size whatever the length: no keys or values are stored.
struct TTTCache : RecurrentCache {
    std::vector<TTTBlockState> layers;  // empty = fresh (no tokens yet)
    int64_t offset = 0;
    int64_t length() const override { return offset; }
    void clear() override {
        layers.clear();
        offset = 0;
    }
};

class TTTBlockImpl : public torch::nn::Module {
public:
    explicit TTTBlockImpl(const TTTModelConfig & config);
    at::Tensor forward(const at::Tensor & x, TTTMode mode);
    // Continues the sequences of `state` (a default state starts them) and advances it.
    at::Tensor forward_with_state(const at::Tensor & x, TTTBlockState & state, TTTMode mode);

    RMSNorm pre_conv_norm{nullptr};  // mamba only
    CausalConv1d pre_conv{nullptr};  // mamba only
    RMSNorm seq_norm{nullptr};
    TTTLayer seq_modeling_block{nullptr};
    RMSNorm ffn_norm{nullptr};
    LlamaMLP mlp{nullptr};
};
TORCH_MODULE(TTTBlock);

class TTTForCausalLMImpl : public torch::nn::Module, public CausalLM {
public:
    explicit TTTForCausalLMImpl(TTTModelConfig config);
    // input_ids [B, T] -> logits [B, T, vocab] in float32, from the start of the sequences.
    at::Tensor forward(const at::Tensor & input_ids, TTTMode mode = TTTMode::dual);

    // CausalLM. forward_tokens continues the sequences held in cache->recurrent (a TTTCache, created
    // when the cache has none) in the dual form; a null cache runs forward(). forward_train accepts
    // only right padding (a recurrence cannot skip pads before a sequence; pads after it change no
    // earlier output), so attention_mask is checked and otherwise unused.
    at::Tensor forward_tokens(const at::Tensor & input_ids, KVCache * cache) override;
    LMOutput forward_train(const at::Tensor & input_ids, const at::Tensor & attention_mask,
                           const at::Tensor & labels) override;
    KVCache make_cache() const override;
    int64_t vocab_size() const override { return config_.vocab_size; }
    int64_t max_position_embeddings() const override { return config_.max_position_embeddings; }
    std::vector<int32_t> eos_token_ids() const override { return config_.eos_token_ids; }
    int32_t bos_token_id() const override { return config_.bos_token_id; }
    c10::Device device() const override;

    const TTTModelConfig & config() const { return config_; }

    torch::nn::Embedding embed_tokens{nullptr};
    torch::nn::ModuleList layers{nullptr};
    RMSNorm norm{nullptr};
    torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

private:
    // ids on the model's device as int64, after checking shape and (host ids) the vocabulary range.
    at::Tensor checked_ids(const at::Tensor & input_ids) const;
    at::Tensor logits(const at::Tensor & hidden);

    TTTModelConfig config_;
};
TORCH_MODULE(TTTForCausalLM);

}  // namespace ct3
