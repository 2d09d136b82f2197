#include "models/bert.h"

#include <cmath>

namespace ct3 {

namespace nn = torch::nn;

at::Tensor multi_head_attention(const at::Tensor & q, const at::Tensor & k, const at::Tensor & v, int64_t n_heads,
                                const at::Tensor & bias) {
    const int64_t batch = q.size(0), seq = q.size(1), hidden = q.size(2), head_dim = hidden / n_heads;
    auto split = [&](const at::Tensor & x) { return x.view({batch, seq, n_heads, head_dim}).transpose(1, 2); };
    at::Tensor scores = torch::matmul(split(q), split(k).transpose(-1, -2)) / std::sqrt(double(head_dim));
    at::Tensor probs = torch::softmax(scores + bias, -1);
    return torch::matmul(probs, split(v)).transpose(1, 2).reshape({batch, seq, hidden});
}

BertModel::BertModel(EncoderConfig config) : Encoder(std::move(config)) {
    const auto & c = config_;
    const int64_t h = c.hidden_size;
    auto norm = [&] { return nn::LayerNorm(nn::LayerNormOptions({h}).eps(c.layer_norm_eps)); };
    auto emb = register_module("embeddings", std::make_shared<ModuleGroup>());
    word_embeddings_ = emb->register_module("word_embeddings", nn::Embedding(c.vocab_size, h));
    position_embeddings_ = emb->register_module("position_embeddings", nn::Embedding(c.max_position_embeddings, h));
    if (c.type_vocab_size > 0) {
        token_type_embeddings_ = emb->register_module("token_type_embeddings", nn::Embedding(c.type_vocab_size, h));
    }
    embeddings_norm_ = emb->register_module("LayerNorm", norm());

    auto encoder = register_module("encoder", std::make_shared<ModuleGroup>());
    auto layer_list = encoder->register_module("layer", std::make_shared<ModuleGroup>());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        auto layer = layer_list->register_module(std::to_string(i), std::make_shared<ModuleGroup>());
        auto attention = layer->register_module("attention", std::make_shared<ModuleGroup>());
        auto self = attention->register_module("self", std::make_shared<ModuleGroup>());
        auto attn_output = attention->register_module("output", std::make_shared<ModuleGroup>());
        auto intermediate = layer->register_module("intermediate", std::make_shared<ModuleGroup>());
        auto output = layer->register_module("output", std::make_shared<ModuleGroup>());
        Layer l;
        l.query = self->register_module("query", nn::Linear(h, h));
        l.key = self->register_module("key", nn::Linear(h, h));
        l.value = self->register_module("value", nn::Linear(h, h));
        l.attn_out = attn_output->register_module("dense", nn::Linear(h, h));
        l.attn_norm = attn_output->register_module("LayerNorm", norm());
        l.intermediate = intermediate->register_module("dense", nn::Linear(h, c.intermediate_size));
        l.out = output->register_module("dense", nn::Linear(c.intermediate_size, h));
        l.out_norm = output->register_module("LayerNorm", norm());
        layers_.push_back(l);
    }
    eval();
}

at::Tensor BertModel::forward(const at::Tensor & input_ids, const at::Tensor & attention_mask) {
    check_inputs(input_ids, attention_mask);
    const int64_t seq = input_ids.size(1);
    at::Tensor positions = torch::arange(seq, input_ids.options()).unsqueeze(0);
    at::Tensor x = word_embeddings_(input_ids) + position_embeddings_(positions);
    if (token_type_embeddings_) x = x + token_type_embeddings_(torch::zeros_like(input_ids));
    x = embeddings_norm_(x);
    at::Tensor bias = padding_bias(attention_mask, x.scalar_type());
    for (auto & l : layers_) {
        at::Tensor ctx = multi_head_attention(l.query(x), l.key(x), l.value(x), config_.num_attention_heads, bias);
        at::Tensor a = l.attn_norm(l.attn_out(ctx) + x);
        x = l.out_norm(l.out(apply_activation(l.intermediate(a), config_.hidden_act)) + a);
    }
    return x;
}

}  // namespace ct3
