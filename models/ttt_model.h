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
// This slice runs whole sequences (training, scoring). Chunked decoding with a cache is the layer's
// TTTState for the llama backbone; the mamba backbone's conv buffers are not carried yet.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

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
    int64_t conv_width = 4;
    double initializer_range = 0.02;

    // "125m" | "350m" | "760m" | "1.3b" with the layer type and backbone; throws invalid_argument
    // naming the size and the choices.
    static TTTModelConfig named(const std::string & size, const std::string & ttt_layer_type = "linear",
                                const std::string & backbone = "mamba");
    TTTConfig layer_config() const;
    void validate() const;  // throws invalid_argument naming the field
    // Parameters of the model this config builds, from the shapes alone (no allocation).
    int64_t parameter_count() const;
};

std::vector<std::string> ttt_model_sizes();

class TTTBlockImpl : public torch::nn::Module {
public:
    explicit TTTBlockImpl(const TTTModelConfig & config);
    at::Tensor forward(const at::Tensor & x, TTTMode mode);

    RMSNorm pre_conv_norm{nullptr};  // mamba only
    CausalConv1d pre_conv{nullptr};  // mamba only
    RMSNorm seq_norm{nullptr};
    TTTLayer seq_modeling_block{nullptr};
    RMSNorm ffn_norm{nullptr};
    LlamaMLP mlp{nullptr};
};
TORCH_MODULE(TTTBlock);

class TTTForCausalLMImpl : public torch::nn::Module {
public:
    explicit TTTForCausalLMImpl(TTTModelConfig config);
    // input_ids [B, T] -> logits [B, T, vocab] in float32.
    at::Tensor forward(const at::Tensor & input_ids, TTTMode mode = TTTMode::dual);
    const TTTModelConfig & config() const { return config_; }

    torch::nn::Embedding embed_tokens{nullptr};
    torch::nn::ModuleList layers{nullptr};
    RMSNorm norm{nullptr};

private:
    TTTModelConfig config_;
};
TORCH_MODULE(TTTForCausalLM);

}  // namespace ct3
