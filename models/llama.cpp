#include "models/llama.h"

#include <cmath>
#include <limits>

#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include "models/error.h"
#include "models/rope.h"

namespace F = torch::nn::functional;

namespace ct3 {

//
// RMSNorm
//

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
    weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor & x) {
    // HF: the statistics in float32, the normalised activations cast back before the weight multiply.
    at::Tensor h = x.to(torch::kFloat32);
    at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
    h = h * torch::rsqrt(variance + eps);
    return weight * h.to(x.scalar_type());
}

//
// Projections (swappable for LoRA)
//

torch::nn::AnyModule & ProjectionsImpl::add_projection(const std::string & name, int64_t in, int64_t out, bool bias) {
    torch::nn::Linear linear(torch::nn::LinearOptions(in, out).bias(bias));
    register_module(name, linear);
    names_.push_back(name);
    return projections_[name] = torch::nn::AnyModule(linear);
}

torch::nn::AnyModule & ProjectionsImpl::projection(const std::string & name) {
    auto it = projections_.find(name);
    if (it == projections_.end()) {
        fail(ErrorKind::not_found, "no projection '{}' in {} (has: {})", name, this->name(), fmt::join(names_, ", "));
    }
    return it->second;
}

void ProjectionsImpl::replace_projection(const std::string & name, torch::nn::AnyModule module) {
    torch::nn::AnyModule & slot = projection(name);
    replace_module(name, module.ptr());
    slot = std::move(module);
}

std::vector<std::string> ProjectionsImpl::projection_names() const { return names_; }

//
// Attention
//

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig & c)
    : n_heads_(c.num_attention_heads), n_kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
    q_proj_ = &add_projection("q_proj", c.hidden_size, n_heads_ * head_dim_, c.qkv_bias);
    k_proj_ = &add_projection("k_proj", c.hidden_size, n_kv_heads_ * head_dim_, c.qkv_bias);
    v_proj_ = &add_projection("v_proj", c.hidden_size, n_kv_heads_ * head_dim_, c.qkv_bias);
    o_proj_ = &add_projection("o_proj", n_heads_ * head_dim_, c.hidden_size, c.o_bias);
}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin,
                                       const at::Tensor & allowed, at::Tensor * key_cache, at::Tensor * value_cache) {
    const int64_t B = x.size(0), T = x.size(1);
    at::Tensor q = q_proj_->forward(x).view({B, T, n_heads_, head_dim_}).transpose(1, 2);
    at::Tensor k = k_proj_->forward(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
    at::Tensor v = v_proj_->forward(x).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
    if (key_cache != nullptr && value_cache != nullptr) {
        if (key_cache->defined()) {
            k = torch::cat({*key_cache, k}, 2);
            v = torch::cat({*value_cache, v}, 2);
        }
        *key_cache = k;
        *value_cache = v;
    }
    // GQA: query head h reads kv head h / n_rep (HF repeat_kv = expand + reshape).
    const int64_t n_rep = n_heads_ / n_kv_heads_, S = k.size(2);
    if (n_rep > 1) {
        k = k.unsqueeze(2).expand({B, n_kv_heads_, n_rep, S, head_dim_}).reshape({B, n_heads_, S, head_dim_});
        v = v.unsqueeze(2).expand({B, n_kv_heads_, n_rep, S, head_dim_}).reshape({B, n_heads_, S, head_dim_});
    }
    at::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
    if (T == 1 && !allowed.defined()) {
        // One decoded token over the cache: plain matmul-softmax-matmul (memory-bound either way).
        // SDPA would pick a backend per key length, and on Hopper (cuDNN attention) that builds a
        // new plan for every decode step: ~75 ms per token whatever the model size (H200, torch 2.11).
        at::Tensor scores = torch::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(head_dim_)));
        out = torch::matmul(torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type()), v);
    } else {
        // Fused kernel (flash / memory-efficient) where available; the boolean mask means "may attend".
        // An undefined `allowed` means plain causal attention (see hidden_states).
        out = allowed.defined() ? at::scaled_dot_product_attention(q, k, v, allowed, 0.0, false)
                                : at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
    }
#else
    // HF eager: scores in the activation dtype, softmax in float32, probabilities cast back.
    at::Tensor scores = torch::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(head_dim_)));
    scores = scores.to(torch::kFloat32).masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest());
    at::Tensor probs = torch::softmax(scores, -1).to(q.scalar_type());
    out = torch::matmul(probs, v);
#endif
    out = out.transpose(1, 2).reshape({B, T, n_heads_ * head_dim_});
    return o_proj_->forward(out);
}

//
// MLP, decoder layer, model
//

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig & c) {
    gate_proj_ = &add_projection("gate_proj", c.hidden_size, c.intermediate_size, c.mlp_bias);
    up_proj_ = &add_projection("up_proj", c.hidden_size, c.intermediate_size, c.mlp_bias);
    down_proj_ = &add_projection("down_proj", c.intermediate_size, c.hidden_size, c.mlp_bias);
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor & x) {
    return down_proj_->forward(F::silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig & c) {
    self_attn = register_module("self_attn", LlamaAttention(c));
    mlp = register_module("mlp", LlamaMLP(c));
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin,
                                          const at::Tensor & allowed, at::Tensor * key_cache,
                                          at::Tensor * value_cache) {
    at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, allowed, key_cache, value_cache);
    return h + mlp->forward(post_attention_layernorm->forward(h));
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig & c) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c));
    norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

//
// Causal LM
//

LlamaForCausalLMImpl::LlamaForCausalLMImpl(LlamaConfig config, bool init_weights) : config_(std::move(config)) {
    config_.validate("LlamaConfig");
    model = register_module("model", LlamaModel(config_));
    if (!config_.tie_word_embeddings) {
        lm_head = register_module("lm_head",
                                  torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, config_.vocab_size)
                                                        .bias(false)));
    }
    inv_freq_ = rope_inv_freq(config_.rope, config_.head_dim);
    if (!init_weights) return;
    // HF _init_weights: normal(0, 0.02) for linear and embedding weights, zero biases, norms stay ones.
    torch::NoGradGuard no_grad;
    for (auto & p : named_parameters()) {
        const std::string & name = p.key();
        if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
            p.value().zero_();
        } else if (p.value().dim() == 2) {
            p.value().normal_(0.0, 0.02);
        }
    }
}

c10::Device LlamaForCausalLMImpl::device() const { return model->embed_tokens->weight.device(); }

c10::ScalarType LlamaForCausalLMImpl::dtype() const { return model->embed_tokens->weight.scalar_type(); }

LlamaDecoderLayerImpl & LlamaForCausalLMImpl::layer(int64_t i) {
    CT3_CHECK(i >= 0 && i < config_.num_hidden_layers, ErrorKind::invalid_argument, "layer {} out of range [0, {})", i,
              config_.num_hidden_layers);
    return *model->layers->ptr<LlamaDecoderLayerImpl>(static_cast<size_t>(i));
}

KVCache LlamaForCausalLMImpl::make_cache() const {
    KVCache cache;
    cache.keys.resize(static_cast<size_t>(config_.num_hidden_layers));
    cache.values.resize(static_cast<size_t>(config_.num_hidden_layers));
    return cache;
}

at::Tensor LlamaForCausalLMImpl::hidden_states(const at::Tensor & input_ids, KVCache * cache,
                                               const at::Tensor & attention_mask) {
    check_input_ids(input_ids, config_.vocab_size);
    const c10::Device dev = device();
    at::Tensor ids = input_ids.to(dev, torch::kInt64);
    const int64_t B = ids.size(0), T = ids.size(1);
    const size_t n_layers = static_cast<size_t>(config_.num_hidden_layers);
    int64_t past = 0;
    if (cache != nullptr) {
        if (cache->keys.size() != n_layers || cache->values.size() != n_layers) {
            CT3_CHECK(cache->length() == 0, ErrorKind::invalid_argument,
                      "KV cache has {} layers but the model has {}", cache->keys.size(), n_layers);
            *cache = make_cache();
        }
        past = cache->length();
        CT3_CHECK(past == 0 || cache->keys[0].size(0) == B, ErrorKind::invalid_argument,
                  "KV cache holds batch {} but input_ids has batch {}", past == 0 ? 0 : cache->keys[0].size(0), B);
    }
    const int64_t S = past + T;
    auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
    at::Tensor q_pos = torch::arange(past, S, long_opts);
    at::Tensor k_pos = torch::arange(0, S, long_opts);

    // allowed[b, 0, t, s]: causal, optionally windowed (Mistral: kv_idx > q_idx - window), minus padding.
    at::Tensor allowed = k_pos.view({1, S}) <= q_pos.view({T, 1});
    if (config_.sliding_window > 0) {
        allowed = allowed & (k_pos.view({1, S}) > q_pos.view({T, 1}) - config_.sliding_window);
    }
    allowed = allowed.view({1, 1, T, S});
#if TORCH_VERSION_MAJOR >= 2
    // Plain causal attention (no window, no padding) with a fresh cache or a single new token needs no
    // mask tensor: SDPA then picks its fused kernels (flash / memory-efficient) with is_causal.
    if (config_.sliding_window == 0 && !attention_mask.defined() && (T == 1 || past == 0)) allowed = at::Tensor();
#endif
    if (attention_mask.defined()) {
        CT3_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                  ErrorKind::invalid_argument, "attention_mask must have shape [{}, {}] (got [{}])", B, S,
                  fmt::join(attention_mask.sizes(), ", "));
        at::Tensor keep = attention_mask.to(dev).ne(0);
        // Padding queries may look at every causal key: their outputs are never used, and this keeps
        // each softmax row non-empty (no NaN, even for an all-padding row).
        allowed = allowed & (keep.view({B, 1, 1, S}) | keep.slice(1, past).logical_not().view({B, 1, T, 1}));
    }

    if (inv_freq_.device() != dev) {
        // Once per device change, not per call; never as an inference tensor (a first call under
        // c10::InferenceMode must not stop later training forwards from saving it for backward).
        c10::InferenceMode not_inference(false);
        inv_freq_ = inv_freq_.to(dev);
    }
    at::Tensor h = model->embed_tokens->forward(ids);
    auto [cos, sin] = rope_cos_sin(inv_freq_, q_pos.view({1, T}).expand({B, T}), h.scalar_type());
    for (size_t i = 0; i < n_layers; ++i) {
        auto & layer = *model->layers->ptr<LlamaDecoderLayerImpl>(i);
        h = layer.forward(h, cos, sin, allowed, cache ? &cache->keys[i] : nullptr, cache ? &cache->values[i] : nullptr);
    }
    return model->norm->forward(h);
}

at::Tensor LlamaForCausalLMImpl::logits(const at::Tensor & hidden) {
    at::Tensor out = lm_head ? lm_head->forward(hidden) : F::linear(hidden, model->embed_tokens->weight);
    return out.to(torch::kFloat32);
}

at::Tensor LlamaForCausalLMImpl::forward_tokens(const at::Tensor & input_ids, KVCache * cache) {
    return logits(hidden_states(input_ids, cache, at::Tensor()));
}

LMOutput LlamaForCausalLMImpl::forward_train(const at::Tensor & input_ids, const at::Tensor & attention_mask,
                                             const at::Tensor & labels) {
    LMOutput out;
    out.logits = logits(hidden_states(input_ids, nullptr, attention_mask));
    if (labels.defined()) out.loss = causal_lm_loss(out.logits, labels);
    return out;
}

void LlamaForCausalLMImpl::load_parameter(const std::string & name, const at::Tensor & value,
                                          const std::string & source) {
    // named_parameters() returns a dict by value: keep it alive while `param` points into it.
    const auto params = named_parameters(/*recurse=*/true);
    const at::Tensor * param = params.find(name);
    CT3_CHECK(param != nullptr, ErrorKind::not_found, "{}: the model has no parameter '{}'", source, name);
    CT3_CHECK(value.defined() && value.sizes() == param->sizes(), ErrorKind::invalid_argument,
              "{}: tensor '{}' has shape [{}] (expected [{}])", source, name,
              value.defined() ? fmt::format("{}", fmt::join(value.sizes(), ", ")) : "undefined",
              fmt::join(param->sizes(), ", "));
    CT3_CHECK(value.is_floating_point(), ErrorKind::unsupported, "{}: tensor '{}' has dtype {} (expected a float type)",
              source, name, c10::toString(value.scalar_type()));
    torch::NoGradGuard no_grad;
    at::Tensor target = *param;  // shares storage with the registered parameter
    target.copy_(value);
}

at::Tensor causal_lm_loss(const at::Tensor & logits, const at::Tensor & labels) {
    CT3_CHECK(logits.dim() == 3 && labels.dim() == 2 && labels.size(0) == logits.size(0) &&
                  labels.size(1) == logits.size(1),
              ErrorKind::invalid_argument, "labels must have shape [{}, {}] (got [{}])", logits.size(0),
              logits.dim() > 1 ? logits.size(1) : 0, fmt::join(labels.sizes(), ", "));
    const int64_t V = logits.size(2);
    at::Tensor target = labels.to(logits.device(), torch::kInt64);
    // Checked where it is free (host labels); on an accelerator the check would sync the device once
    // per training step, so labels there are trusted (the TTT trainer validates them on the host).
    if (labels.device().is_cpu()) {
        const bool valid = (labels.eq(-100) | (labels.ge(0) & labels.lt(V))).all().item<bool>();
        CT3_CHECK(valid, ErrorKind::invalid_argument, "labels must be -100 or token ids in [0, {})", V);
    }
    // HF ForCausalLMLoss pads labels with -100 and shifts left; dropping the last logit is equivalent.
    at::Tensor shift_logits = logits.slice(1, 0, logits.size(1) - 1).to(torch::kFloat32).reshape({-1, V});
    at::Tensor shift_labels = target.slice(1, 1).reshape({-1});
    return F::cross_entropy(shift_logits, shift_labels, F::CrossEntropyFuncOptions().ignore_index(-100));
}

}  // namespace ct3
