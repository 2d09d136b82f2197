#include "models/mpnet.h"

#include <cmath>

#include "models/bert.h"

namespace ct3 {

namespace nn = torch::nn;

at::Tensor mpnet_relative_position_bucket(const at::Tensor & relative_position, int64_t num_buckets,
                                          int64_t max_distance) {
    at::Tensor n = -relative_position;
    num_buckets /= 2;
    at::Tensor ret = (n < 0).to(torch::kInt64) * num_buckets;
    n = n.abs();
    const int64_t max_exact = num_buckets / 2;
    at::Tensor is_small = n < max_exact;
    // clamp_min(1) only avoids log(0) -> -inf -> int64 cast on entries that is_small discards anyway;
    // the arithmetic is float32 like transformers' so truncation happens at the same places.
    at::Tensor scaled = torch::log(n.clamp_min(1).to(torch::kFloat32) / double(max_exact)) /
                        std::log(double(max_distance) / double(max_exact)) * double(num_buckets - max_exact);
    at::Tensor large = (scaled.to(torch::kInt64) + max_exact).clamp_max(num_buckets - 1);
    return ret + torch::where(is_small, n, large);
}

at::Tensor mpnet_position_ids(const at::Tensor & input_ids, int64_t padding_idx) {
    at::Tensor mask = input_ids.ne(padding_idx).to(torch::kInt64);
    return torch::cumsum(mask, 1) * mask + padding_idx;
}

MPNetModel::MPNetModel(EncoderConfig config) : Encoder(std::move(config)) {
    const auto & c = config_;
    const int64_t h = c.hidden_size;
    auto norm = [&] { return nn::LayerNorm(nn::LayerNormOptions({h}).eps(c.layer_norm_eps)); };
    auto emb = register_module("embeddings", std::make_shared<ModuleGroup>());
    word_embeddings_ = emb->register_module("word_embeddings", nn::Embedding(c.vocab_size, h));
    position_embeddings_ = emb->register_module("position_embeddings", nn::Embedding(c.max_position_embeddings, h));
    embeddings_norm_ = emb->register_module("LayerNorm", norm());

    auto encoder = register_module("encoder", std::make_shared<ModuleGroup>());
    auto layer_list = encoder->register_module("layer", std::make_shared<ModuleGroup>());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        auto layer = layer_list->register_module(std::to_string(i), std::make_shared<ModuleGroup>());
        auto attention = layer->register_module("attention", std::make_shared<ModuleGroup>());
        auto attn = attention->register_module("attn", std::make_shared<ModuleGroup>());
        auto intermediate = layer->register_module("intermediate", std::make_shared<ModuleGroup>());
        auto output = layer->register_module("output", std::make_shared<ModuleGroup>());
        Layer l;
        l.q = attn->register_module("q", nn::Linear(h, h));
        l.k = attn->register_module("k", nn::Linear(h, h));
        l.v = attn->register_module("v", nn::Linear(h, h));
        l.o = attn->register_module("o", nn::Linear(h, h));
        l.attn_norm = attention->register_module("LayerNorm", norm());
        l.intermediate = intermediate->register_module("dense", nn::Linear(h, c.intermediate_size));
        l.out = output->register_module("dense", nn::Linear(c.intermediate_size, h));
        l.out_norm = output->register_module("LayerNorm", norm());
        layers_.push_back(l);
    }
    relative_attention_bias_ = encoder->register_module(
        "relative_attention_bias", nn::Embedding(c.relative_attention_num_buckets, c.num_attention_heads));
    eval();
}

at::Tensor MPNetModel::forward(const at::Tensor & input_ids, const at::Tensor & attention_mask) {
    check_inputs(input_ids, attention_mask);
    const int64_t seq = input_ids.size(1);
    at::Tensor x = word_embeddings_(input_ids) + position_embeddings_(mpnet_position_ids(input_ids, config_.pad_token_id));
    x = embeddings_norm_(x);

    // compute_position_bias: plain 0..seq-1 positions (not the padding-aware ones), [1, heads, seq, seq].
    at::Tensor pos = torch::arange(seq, input_ids.options());
    at::Tensor buckets = mpnet_relative_position_bucket(pos.unsqueeze(0) - pos.unsqueeze(1),
                                                        config_.relative_attention_num_buckets);
    at::Tensor bias = relative_attention_bias_(buckets).permute({2, 0, 1}).unsqueeze(0);
    bias = bias + padding_bias(attention_mask, x.scalar_type());
    for (auto & l : layers_) {
        at::Tensor ctx = multi_head_attention(l.q(x), l.k(x), l.v(x), config_.num_attention_heads, bias);
        at::Tensor a = l.attn_norm(l.o(ctx) + x);
        x = l.out_norm(l.out(apply_activation(l.intermediate(a), config_.hidden_act)) + a);
    }
    return x;
}

}  // namespace ct3
