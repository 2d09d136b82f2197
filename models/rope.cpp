#include "models/rope.h"

#include <cmath>

#include "models/error.h"

namespace ct3 {

at::Tensor rope_inv_freq(const RopeConfig & rope, int64_t head_dim) {
    CT3_CHECK(head_dim > 0 && head_dim % 2 == 0, ErrorKind::invalid_argument,
              "RoPE head_dim must be even and > 0 (got {})", head_dim);
    // Same op order as transformers so that float32 rounding matches: arange int64 -> float, / dim, theta ** x.
    auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(head_dim);
    // Python's `scalar / tensor` is tensor.reciprocal() * scalar; spelled the same way here.
    at::Tensor inv_freq = torch::pow(rope.theta, exponents).reciprocal();
    if (rope.type == "default") return inv_freq;
    if (rope.type == "linear") return inv_freq / rope.factor;
    CT3_CHECK(rope.type == "llama3", ErrorKind::unsupported, "RoPE type '{}' is not supported", rope.type);

    // Llama 3.1: keep high frequencies, divide low frequencies by `factor`, interpolate in between.
    const double old_context = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / rope.low_freq_factor;
    const double high_freq_wavelen = old_context / rope.high_freq_factor;
    at::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
    at::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
    at::Tensor smooth =
        (wavelen.reciprocal() * old_context - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
    at::Tensor is_medium = (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
    return torch::where(is_medium, smoothed, scaled);
}

std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor & inv_freq, const at::Tensor & positions,
                                               c10::ScalarType dtype) {
    // freqs[b, t, i] = pos[b, t] * inv_freq[i]; HF computes this as a matmul with inner size 1, i.e. an
    // exact float32 product, so a broadcast multiply gives bit-identical values.
    at::Tensor f = inv_freq.to(positions.device(), torch::kFloat32);
    at::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * f.view({1, 1, -1});
    at::Tensor emb = torch::cat({freqs, freqs}, -1);
    return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

namespace {

at::Tensor rotate_half(const at::Tensor & x) {
    const int64_t half = x.size(-1) / 2;
    return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

}  // namespace

at::Tensor apply_rope(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & sin) {
    at::Tensor c = cos.unsqueeze(1);
    at::Tensor s = sin.unsqueeze(1);
    return x * c + rotate_half(x) * s;
}

}  // namespace ct3
