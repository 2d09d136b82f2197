// MPNetModel: the encoder of all-mpnet-base-v2 (the original CT3 embedder), following transformers'
// modeling_mpnet.py: positions start at padding_idx + 1 and skip padding (create_position_ids_from_
// input_ids), and every layer adds a T5-style bidirectional relative position bias shared by all
// layers (encoder.relative_attention_bias, [num_buckets, heads]). Parameters carry transformers'
// names; eval mode only.
#pragma once

#include <vector>

#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/encoder.h"

namespace ct3 {

// transformers' MPNetEncoder.relative_position_bucket: relative_position (memory - context, int64)
// -> bucket in [0, num_buckets); half the buckets for each direction, exact below num_buckets/4,
// logarithmic up to max_distance.
at::Tensor mpnet_relative_position_bucket(const at::Tensor & relative_position, int64_t num_buckets = 32,
                                          int64_t max_distance = 128);

// create_position_ids_from_input_ids: cumsum of the non-pad mask, times the mask, plus padding_idx.
at::Tensor mpnet_position_ids(const at::Tensor & input_ids, int64_t padding_idx);

class MPNetModel : public Encoder {
public:
    explicit MPNetModel(EncoderConfig config);
    at::Tensor forward(const at::Tensor & input_ids, const at::Tensor & attention_mask) override;

private:
    struct Layer {
        torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
        torch::nn::LayerNorm attn_norm{nullptr};
        torch::nn::Linear intermediate{nullptr}, out{nullptr};
        torch::nn::LayerNorm out_norm{nullptr};
    };
    torch::nn::Embedding word_embeddings_{nullptr}, position_embeddings_{nullptr};
    torch::nn::LayerNorm embeddings_norm_{nullptr};
    torch::nn::Embedding relative_attention_bias_{nullptr};
    std::vector<Layer> layers_;
};

}  // namespace ct3
