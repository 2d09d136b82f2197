// Rotary position embeddings exactly as Hugging Face computes them (rotate_half layout): inverse
// frequencies in float32 (default, linear and llama3 scaling), cos/sin in float32 then cast to the
// activation dtype, applied as x * cos + rotate_half(x) * sin.
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "models/llama_config.h"

namespace ct3 {

// inv_freq [head_dim / 2] float32 on CPU: 1 / theta^(arange(0, d, 2) / d), then the scaling of `rope`
// (linear: / factor; llama3: transformers' _compute_llama3_parameters).
at::Tensor rope_inv_freq(const RopeConfig & rope, int64_t head_dim);

// cos and sin [batch, seq, head_dim] for positions [batch, seq] (int64), computed in float32 on the
// device of `positions` and cast to `dtype`. `inv_freq` may live anywhere; it is moved as needed.
std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor & inv_freq, const at::Tensor & positions,
                                               c10::ScalarType dtype);

// x [batch, heads, seq, head_dim]; cos/sin [batch, seq, head_dim] (broadcast over heads).
at::Tensor apply_rope(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin);

}  // namespace ct3
