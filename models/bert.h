// BertModel: the BERT encoder of all-MiniLM-L6-v2, bge and e5 (post-LayerNorm, absolute positions).
// Parameters carry transformers' names ("embeddings.word_embeddings.weight",
// "encoder.layer.N.attention.self.query.weight", ...); the pooler is not built (sentence embedders
// pool themselves). Runs in eval mode only: dropout is the identity.
#pragma once

#include <vector>

#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/encoder.h"

namespace ct3 {

class BertModel : public Encoder {
public:
    explicit BertModel(EncoderConfig config);
    // token_type_ids are all zero (single-segment sentence embedding).
    at::Tensor forward(const at::Tensor & input_ids, const at::Tensor & attention_mask) override;

private:
    struct Layer {
        torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attn_out{nullptr};
        torch::nn::LayerNorm attn_norm{nullptr};
        torch::nn::Linear intermediate{nullptr}, out{nullptr};
        torch::nn::LayerNorm out_norm{nullptr};
    };
    torch::nn::Embedding word_embeddings_{nullptr}, position_embeddings_{nullptr}, token_type_embeddings_{nullptr};
    torch::nn::LayerNorm embeddings_norm_{nullptr};
    std::vector<Layer> layers_;
};

// Multi-head scaled dot-product attention on [batch, seq, hidden] projections; `bias` is added to
// the scores ([batch or 1, heads or 1, seq, seq] broadcastable). Shared with MPNet.
at::Tensor multi_head_attention(const at::Tensor & q, const at::Tensor & k, const at::Tensor & v, int64_t n_heads,
                                const at::Tensor & bias);

}  // namespace ct3
