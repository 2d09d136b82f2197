// Llama-family decoder LM (Llama 2/3, Mistral, Qwen2) in the libtorch frontend idiom. Submodules carry
// the exact Hugging Face names, so named_parameters() yields "model.layers.0.self_attn.q_proj.weight"
// etc. and checkpoints, LoRA target names and PEFT adapters map one to one.
//
// Every projection is a separately registered module held as a torch::nn::AnyModule (initially a
// torch::nn::Linear): a LoRA layer replaces it through replace_projection() and forward() then calls
// the replacement, with no virtual hooks inside the attention/MLP math.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "models/causal_lm.h"
#include "models/llama_config.h"

namespace ct3 {

// y = weight * (x / rms(x)), computed in float32 and cast back to the input dtype (as HF LlamaRMSNorm).
class RMSNormImpl : public torch::nn::Module {
public:
    RMSNormImpl(int64_t dim, double eps);
    at::Tensor forward(const at::Tensor & x);
    at::Tensor weight;
    double eps;
};
TORCH_MODULE(RMSNorm);

// Base of the attention and MLP blocks: named projections that can be swapped (LoRA).
class ProjectionsImpl : public torch::nn::Module {
public:
    // The current module under `name` ("q_proj", "gate_proj", ...); throws not_found for other names.
    torch::nn::AnyModule & projection(const std::string & name);
    // Replaces projection `name` (re-registering it under the same name) with any module whose
    // forward(Tensor) -> Tensor computes the same shape.
    void replace_projection(const std::string & name, torch::nn::AnyModule module);
    std::vector<std::string> projection_names() const;

protected:
    torch::nn::AnyModule & add_projection(const std::string & name, int64_t in, int64_t out, bool bias);
    // std::map nodes are stable, so the blocks keep plain pointers to their projections.
    std::map<std::string, torch::nn::AnyModule> projections_;
    std::vector<std::string> names_;  // registration (= HF parameter) order
};

class LlamaAttentionImpl : public ProjectionsImpl {
public:
    explicit LlamaAttentionImpl(const LlamaConfig & config);
    // x [B, T, hidden]; cos/sin [B, T, head_dim]; allowed [B or 1, 1, T, past + T] bool (true = attend).
    // Appends this call's keys/values to *key_cache / *value_cache when they are non-null.
    at::Tensor forward(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin, const at::Tensor & allowed,
                       at::Tensor * key_cache, at::Tensor * value_cache);

private:
    int64_t n_heads_, n_kv_heads_, head_dim_;
    torch::nn::AnyModule *q_proj_, *k_proj_, *v_proj_, *o_proj_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public ProjectionsImpl {
public:
    explicit LlamaMLPImpl(const LlamaConfig & config);
    at::Tensor forward(const at::Tensor & x);  // down(silu(gate(x)) * up(x))

private:
    torch::nn::AnyModule *gate_proj_, *up_proj_, *down_proj_;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
public:
    explicit LlamaDecoderLayerImpl(const LlamaConfig & config);
    at::Tensor forward(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin, const at::Tensor & allowed,
                       at::Tensor * key_cache, at::Tensor * value_cache);

    LlamaAttention self_attn{nullptr};
    LlamaMLP mlp{nullptr};
    RMSNorm input_layernorm{nullptr};
    RMSNorm post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// The "model." prefix of HF names: embeddings, layers, final norm.
class LlamaModelImpl : public torch::nn::Module {
public:
    explicit LlamaModelImpl(const LlamaConfig & config);

    torch::nn::Embedding embed_tokens{nullptr};
    torch::nn::ModuleList layers{nullptr};
    RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public torch::nn::Module, public CausalLM {
public:
    // Weights are initialised like HF (normal(0, 0.02) for linear/embedding, ones for norms) unless
    // `init_weights` is false (loaders that overwrite every parameter skip the random fill).
    explicit LlamaForCausalLMImpl(LlamaConfig config, bool init_weights = true);

    at::Tensor forward_tokens(const at::Tensor & input_ids, KVCache * cache) override;
    LMOutput forward_train(const at::Tensor & input_ids, const at::Tensor & attention_mask,
                           const at::Tensor & labels) override;
    KVCache make_cache() const override;
    int64_t vocab_size() const override { return config_.vocab_size; }
    int64_t max_position_embeddings() const override { return config_.max_position_embeddings; }
    std::vector<int32_t> eos_token_ids() const override { return config_.eos_token_ids; }
    int32_t bos_token_id() const override { return config_.bos_token_id; }
    c10::Device device() const override;

    const LlamaConfig & config() const { return config_; }
    c10::ScalarType dtype() const;
    // The decoder layer `i` (for adapters that wrap its projections).
    LlamaDecoderLayerImpl & layer(int64_t i);

    // Copies `value` into the parameter called `name` (HF name), converting dtype/device; throws
    // not_found for unknown names and invalid_argument (naming `source` and the tensor) on shape mismatch.
    void load_parameter(const std::string & name, const at::Tensor & value, const std::string & source);

    LlamaModel model{nullptr};
    torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

private:
    // Runs the decoder on ids [B, T] at positions past + arange(T); returns final-norm hidden states.
    at::Tensor hidden_states(const at::Tensor & input_ids, KVCache * cache, const at::Tensor & attention_mask);
    at::Tensor logits(const at::Tensor & hidden);

    LlamaConfig config_;
    at::Tensor inv_freq_;  // float32, kept out of the parameters/buffers so .to(bf16) cannot round it
};
TORCH_MODULE(LlamaForCausalLM);

// The HF causal-LM loss: logits[:, :-1] against labels[:, 1:], ignore_index -100, mean over counted
// tokens, in float32. logits [B, T, V], labels [B, T].
at::Tensor causal_lm_loss(const at::Tensor & logits, const at::Tensor & labels);

}  // namespace ct3
