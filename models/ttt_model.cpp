#include "models/ttt_model.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "models/error.h"

namespace ct3 {

namespace {

struct NamedSize {
    const char * name;
    int64_t layers, hidden, heads, intermediate;
};

// JAX model.py *-TTT configs (ttt_layers.md §2.1); 760m has head_dim 96.
const NamedSize kSizes[] = {
    {"125m", 12, 768, 12, 2048},
    {"350m", 24, 1024, 16, 2736},
    {"760m", 24, 1536, 16, 4096},
    {"1.3b", 24, 2048, 32, 5504},
};

LlamaConfig mlp_config(const TTTModelConfig & c) {
    LlamaConfig l;
    l.hidden_size = c.hidden_size;
    l.intermediate_size = c.intermediate_size;
    return l;
}

}  // namespace

std::vector<std::string> ttt_model_sizes() {
    std::vector<std::string> out;
    for (const NamedSize & s : kSizes) out.push_back(s.name);
    return out;
}

double TTTModelConfig::reference_base_lr(const std::string & ttt_layer_type) {
    return ttt_layer_type == "mlp" ? 0.1 : 1.0;
}

TTTModelConfig TTTModelConfig::named(const std::string & size, const std::string & ttt_layer_type,
                                     const std::string & backbone) {
    for (const NamedSize & s : kSizes) {
        if (size != s.name) continue;
        TTTModelConfig c;
        c.num_hidden_layers = s.layers;
        c.hidden_size = s.hidden;
        c.num_attention_heads = s.heads;
        c.intermediate_size = s.intermediate;
        c.ttt_layer_type = ttt_layer_type;
        c.backbone = backbone;
        c.ttt_base_lr = reference_base_lr(ttt_layer_type);
        c.validate();
        return c;
    }
    fail(ErrorKind::invalid_argument, "TTT model size '{}' is unknown (expected one of: {})", size,
         fmt::join(ttt_model_sizes(), ", "));
}

TTTConfig TTTModelConfig::layer_config() const {
    TTTConfig t;
    t.hidden_size = hidden_size;
    t.num_heads = num_attention_heads;
    t.mini_batch_size = mini_batch_size;
    t.ttt_base_lr = ttt_base_lr;
    t.ttt_layer_type = ttt_layer_type;
    t.use_gate = backbone == "mamba";
    t.share_qk = backbone == "mamba";
    t.conv_width = conv_width;
    t.rope_theta = rope_theta;
    t.initializer_range = initializer_range;
    t.inner_norm = inner_norm;
    t.learnable_lr = learnable_lr;
    t.learnable_w0 = learnable_w0;
    return t;
}

void TTTModelConfig::validate(const std::string & where) const {
    CT3_CHECK(vocab_size > 0 && num_hidden_layers > 0 && intermediate_size > 0, ErrorKind::invalid_argument,
              "{}: vocab_size, num_hidden_layers and intermediate_size must be > 0 (got {}, {}, {})", where, vocab_size,
              num_hidden_layers, intermediate_size);
    CT3_CHECK(backbone == "mamba" || backbone == "llama", ErrorKind::invalid_argument,
              "{}: backbone must be \"mamba\" or \"llama\" (got \"{}\")", where, backbone);
    CT3_CHECK(rms_norm_eps > 0, ErrorKind::invalid_argument, "{}: rms_norm_eps must be > 0 (got {})", where,
              rms_norm_eps);
    CT3_CHECK(conv_width >= 1, ErrorKind::invalid_argument, "{}: conv_kernel must be >= 1 (got {})", where,
              conv_width);
    CT3_CHECK(max_position_embeddings > 0, ErrorKind::invalid_argument,
              "{}: max_position_embeddings must be > 0 (got {})", where, max_position_embeddings);
    CT3_CHECK(bos_token_id >= -1 && bos_token_id < vocab_size, ErrorKind::invalid_argument,
              "{}: bos_token_id must be -1 (none) or in [0, vocab_size {}) (got {})", where, vocab_size,
              bos_token_id);
    for (int32_t id : eos_token_ids) {
        CT3_CHECK(id >= 0 && id < vocab_size, ErrorKind::invalid_argument,
                  "{}: eos_token_id must be in [0, vocab_size {}) (got {})", where, vocab_size, id);
    }
    layer_config().validate(where);
}

int64_t TTTModelConfig::parameter_count() const {
    const int64_t D = hidden_size, H = num_attention_heads, d = D / H, f = ttt_layer_type == "mlp" ? 4 * d : d;
    const bool mamba = backbone == "mamba";
    int64_t ttt = 4 * D * D;                               // Wq, Wv, Wo and Wg (mamba) or Wk (llama)
    if (mamba) ttt += 2 * (D * conv_width + D);            // conv_q, conv_k
    ttt += H * d * f + H * f;                              // W1, b1
    if (ttt_layer_type == "mlp") ttt += H * f * d + H * d;  // W2, b2
    ttt += 2 * H * d;                                      // ttt_norm weight, bias
    ttt += H * D + H;                                      // learnable lr weight, bias
    ttt += mini_batch_size;                                // learnable_token_idx
    ttt += 2 * D;                                          // post_norm
    int64_t block = ttt + 2 * D + 3 * D * intermediate_size;  // seq_norm, ffn_norm, SwiGLU
    if (mamba) block += D + D * conv_width + D;             // pre_conv_norm, pre_conv
    const int64_t head = tie_word_embeddings ? 0 : vocab_size * D;
    return num_hidden_layers * block + vocab_size * D + D + head;  // + embeddings, final norm, untied head
}

TTTBlockImpl::TTTBlockImpl(const TTTModelConfig & c) {
    if (c.backbone == "mamba") {
        pre_conv_norm = register_module("pre_conv_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
        pre_conv = register_module("pre_conv", CausalConv1d(c.hidden_size, c.conv_width));
    }
    seq_norm = register_module("seq_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    seq_modeling_block = register_module("seq_modeling_block", TTTLayer(c.layer_config()));
    ffn_norm = register_module("ffn_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    mlp = register_module("mlp", LlamaMLP(mlp_config(c)));
    torch::NoGradGuard no_grad;
    for (auto & p : mlp->named_parameters()) p.value().normal_(0.0, c.initializer_range);
}

at::Tensor TTTBlockImpl::forward(const at::Tensor & x, TTTMode mode) {
    TTTBlockState fresh;
    return forward_with_state(x, fresh, mode);
}

at::Tensor TTTBlockImpl::forward_with_state(const at::Tensor & x_in, TTTBlockState & state, TTTMode mode) {
    at::Tensor x = x_in;
    if (pre_conv) x = x + pre_conv->forward_with_history(pre_conv_norm->forward(x), state.pre_conv_history);
    auto res = seq_modeling_block->forward_with_state(seq_norm->forward(x), std::move(state.ttt), mode);
    state.ttt = std::move(res.second);
    x = x + res.first;
    return x + mlp->forward(ffn_norm->forward(x));
}

TTTForCausalLMImpl::TTTForCausalLMImpl(TTTModelConfig config) : config_(std::move(config)) {
    config_.validate();
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(config_.vocab_size, config_.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i) layers->push_back(TTTBlock(config_));
    norm = register_module("norm", RMSNorm(config_.hidden_size, config_.rms_norm_eps));
    if (!config_.tie_word_embeddings) {
        lm_head = register_module(
            "lm_head",
            torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, config_.vocab_size).bias(false)));
    }
    torch::NoGradGuard no_grad;
    embed_tokens->weight.normal_(0.0, config_.initializer_range);
    if (lm_head) lm_head->weight.normal_(0.0, config_.initializer_range);
}

c10::Device TTTForCausalLMImpl::device() const { return embed_tokens->weight.device(); }

at::Tensor TTTForCausalLMImpl::checked_ids(const at::Tensor & ids) const {
    check_input_ids(ids, config_.vocab_size, "TTTForCausalLM: ");
    return ids.to(device(), torch::kInt64);
}

at::Tensor TTTForCausalLMImpl::logits(const at::Tensor & hidden) {
    // Tied head: logits against the embedding matrix; float32 for the loss and the sampler.
    at::Tensor out = lm_head ? lm_head->forward(hidden) : torch::nn::functional::linear(hidden, embed_tokens->weight);
    return out.to(torch::kFloat32);
}

at::Tensor TTTForCausalLMImpl::forward(const at::Tensor & input_ids, TTTMode mode) {
    at::Tensor h = embed_tokens->forward(checked_ids(input_ids));
    for (size_t i = 0; i < layers->size(); ++i) h = layers->ptr<TTTBlockImpl>(i)->forward(h, mode);
    return logits(norm->forward(h));
}

KVCache TTTForCausalLMImpl::make_cache() const {
    KVCache cache;
    cache.recurrent = std::make_shared<TTTCache>();
    return cache;
}

at::Tensor TTTForCausalLMImpl::forward_tokens(const at::Tensor & input_ids, KVCache * cache) {
    if (cache == nullptr) return forward(input_ids, TTTMode::dual);
    at::Tensor ids = checked_ids(input_ids);
    if (!cache->recurrent) {
        CT3_CHECK(cache->length() == 0, ErrorKind::invalid_argument,
                  "TTTForCausalLM: the cache holds {} tokens of keys/values (a Transformer's cache?), not TTT state",
                  cache->length());
        cache->recurrent = std::make_shared<TTTCache>();
    }
    auto * state = dynamic_cast<TTTCache *>(cache->recurrent.get());
    CT3_CHECK(state != nullptr, ErrorKind::invalid_argument,
              "TTTForCausalLM: cache.recurrent is not a TTTCache (make the cache with this model's make_cache())");
    const size_t n_layers = layers->size();
    if (state->layers.empty()) {
        CT3_CHECK(state->offset == 0, ErrorKind::invalid_argument, "TTTCache: offset {} without layer states",
                  state->offset);
        state->layers.resize(n_layers);
    }
    CT3_CHECK(state->layers.size() == n_layers, ErrorKind::invalid_argument,
              "TTTCache has {} layer states but the model has {} layers", state->layers.size(), n_layers);
    const int64_t B = ids.size(0);
    const at::Tensor & W1 = state->layers[0].ttt.W1;
    CT3_CHECK(state->offset == 0 || (W1.defined() && W1.size(0) == B), ErrorKind::invalid_argument,
              "TTTCache holds batch {} but input_ids has batch {}", W1.defined() ? W1.size(0) : 0, B);
    at::Tensor h = embed_tokens->forward(ids);
    for (size_t i = 0; i < n_layers; ++i) {
        h = layers->ptr<TTTBlockImpl>(i)->forward_with_state(h, state->layers[i], TTTMode::dual);
    }
    state->offset += ids.size(1);
    return logits(norm->forward(h));
}

LMOutput TTTForCausalLMImpl::forward_train(const at::Tensor & input_ids, const at::Tensor & attention_mask,
                                           const at::Tensor & labels) {
    if (attention_mask.defined()) {
        CT3_CHECK(input_ids.defined() && attention_mask.dim() == 2 && attention_mask.sizes() == input_ids.sizes(),
                  ErrorKind::invalid_argument,
                  "TTTForCausalLM: attention_mask must have the shape of input_ids [{}] (got [{}])",
                  input_ids.defined() ? fmt::format("{}", fmt::join(input_ids.sizes(), ", ")) : "",
                  fmt::join(attention_mask.sizes(), ", "));
        // Right padding = every row is 1s then 0s: no 1 after a 0.
        at::Tensor keep = attention_mask.ne(0);
        const bool right_padded =
            keep.size(1) < 2 ||
            !(keep.slice(1, 1) & keep.slice(1, 0, keep.size(1) - 1).logical_not()).any().item<bool>();
        CT3_CHECK(right_padded, ErrorKind::unsupported,
                  "TTTForCausalLM: attention_mask must be right padding (each row 1s then 0s): the TTT recurrence "
                  "cannot skip padding before or inside a sequence");
    }
    LMOutput out;
    out.logits = forward(input_ids, TTTMode::dual);
    if (labels.defined()) out.loss = causal_lm_loss(out.logits, labels);
    return out;
}

}  // namespace ct3
