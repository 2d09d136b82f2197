// The TTT-Linear / TTT-MLP sequence layer, in the libtorch frontend idiom: the Transformer-backbone
// form (separate Q/K/V projections) or, with share_qk, the Mamba-backbone form (one shared Q/K
// projection followed by two depthwise causal convolutions, conv_q and conv_k; §1.2). Parameter names follow the reference PyTorch ttt.py
// (q_proj, k_proj, v_proj, o_proj, g_proj, learnable_ttt_lr_weight/bias, learnable_token_idx,
// ttt_norm_weight/bias, post_norm, W1, b1, W2, b2) so its checkpoints map one to one.
//
// Pipeline (../shared/reference/ttt_layers.md §1): XQ, XK, XV = x·Wq, x·Wk, x·Wv split into heads;
// interleaved RoPE on XQ/XK with the position *within the mini-batch*; the inner loop of
// models/ttt_inner.h per head; heads concatenated; post_norm (full-width LN); optional
// gelu_tanh(x·Wg) gate; o_proj. The inner loop always runs in float32 (float64 for float64 inputs),
// whatever the activation dtype: Q/K/V, the learning rates and the inner weights are cast in and
// the output is cast back before the output projection.
//
// Sequences of any length: mini-batches are aligned to absolute positions (offset + t) mod b, and a
// mini-batch that is cut (by the end of the input or by a state that starts inside one) is run as
// a chunk of it: the chunk's tokens keep their own in-mini-batch positions i (tok_i and RoPE), the
// accumulated gradient of the tokens already seen is carried in TTTState, and the weights are
// advanced only once the mini-batch is complete. For a trailing partial mini-batch of r tokens
// starting at a boundary this is exactly the reference's rule (dual form with b = r, tok_1..tok_r,
// ttt.py:894-907), and it is also what token-by-token decoding computes (§3).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "models/ttt_inner.h"

namespace ct3 {

struct TTTConfig {
    int64_t hidden_size = 768;
    int64_t num_heads = 12;                 // head_dim = hidden_size / num_heads (must be even: RoPE pairs)
    int64_t mini_batch_size = 16;           // b
    double ttt_base_lr = 1.0;               // η_base: 1.0 for TTT-Linear, 0.1 for TTT-MLP in the reference scripts
    std::string ttt_layer_type = "linear";  // "linear" | "mlp" (hidden 4·head_dim, tanh-GELU)
    bool use_gate = false;                  // gelu_tanh(x·Wg) ⊙ before o_proj (the Mamba backbone's gate)
    bool share_qk = false;                  // XQK = x·Wq; XQ = conv_q(XQK), XK = conv_k(XQK) (Mamba backbone)
    int64_t conv_width = 4;                 // of conv_q / conv_k
    double rope_theta = 10000.0;
    double ttt_norm_eps = 1e-6;       // inner per-head LayerNorm
    double post_norm_eps = 1e-6;      // full-width LayerNorm before the gate/o_proj
    double initializer_range = 0.02;  // N(0, σ) for projections, lr weight, W1, W2 (JAX init, §1.11)
    // Ablation switches (paper Table 1, ttt_layers.md §4.1); the defaults are the reference layer.
    // Parameters a switch leaves unused stay registered (the checkpoint layout does not depend on the
    // switches) and simply get no gradient.
    bool inner_norm = true;    // f(x) = x + LN(f_res(x)); false: f(x) = f_res(x) (no LN, no residual)
    // true: E[i,j] = tok_i·lr_j with lr_j = η_base·σ(θ_lr·x_j + β)/d and tok_i = max(0, 1/i + δ_i) (§1.5).
    // false ("fixed η"): lr_j = η_base/d and tok_i = 1/i, i.e. θ_lr, β and δ unused. The 1/i stays: it
    // is part of the reference's η (the running mean of the mini-batch's gradients, issue jax#16);
    // only the learned parts of η are switched off.
    bool learnable_lr = true;
    // false: the initial inner weights θ_init are fixed at zero (W1, b1, W2, b2 unused), as Theorem 1
    // needs; the "+ learnable W0" row of Table 1 turns it on. TTT-Linear only (a zero TTT-MLP has
    // zero inner gradients everywhere).
    bool learnable_w0 = true;

    int64_t head_dim() const { return num_heads > 0 ? hidden_size / num_heads : 0; }
    bool is_mlp() const { return ttt_layer_type == "mlp"; }
    int64_t inner_hidden() const { return is_mlp() ? 4 * head_dim() : head_dim(); }
    // Throws ErrorKind::invalid_argument naming `where` and the offending field.
    void validate(const std::string & where) const;
};

enum class TTTMode {
    dual,    // whole mini-batch chunks as matmuls (training, prefill)
    primal,  // token by token inside each mini-batch (reference primal branch, decoding)
};

// The recurrent state of one layer for a batch of sequences (§3): the inner weights at the start of
// the current mini-batch, the gradient accumulator Σ lr_j·∇ℓ_j(W_start) of the tokens already seen in
// it (undefined tensors = zero, i.e. at a mini-batch boundary), and the number of tokens consumed.
// Tensors are [B, H, ...] in float32 (float64 for float64 inputs).
struct TTTState {
    at::Tensor W1, b1, W2, b2;  // [B,H,d,f] [B,H,1,f] [B,H,f,d] [B,H,1,d]
    at::Tensor grad_W1, grad_b1, grad_W2, grad_b2;
    // share_qk only: the last conv_width − 1 rows of x·Wq seen so far [B, w−1, D] (activation dtype),
    // the inputs conv_q/conv_k still need; undefined = zeros, i.e. before the first token.
    at::Tensor conv_history;
    int64_t offset = 0;  // tokens processed so far (position of the next token)
};

// Per-token inputs of the inner loop for one call.
struct TTTInputs {
    at::Tensor XQ, XK, XV;  // [B, H, T, d], RoPE applied to XQ/XK, compute dtype
    at::Tensor lr;          // [B, H, T]: η_base · sigmoid(x·θ_lr,h + β_lr,h) / d (η_base / d without learnable_lr)
    at::Tensor tok;         // [b]: max(0, 1/i + δ_i), i = 1..b (1/i without learnable_lr)
};

// Depthwise causal 1-D convolution over the sequence ([B, T, C] -> [B, T, C]): output t sees inputs
// t-width+1 .. t (zero padding before the start), one kernel of `width` taps plus a bias per channel.
// Initialised as flax nn.Conv (the JAX reference): lecun-normal taps, zero bias.
class CausalConv1dImpl : public torch::nn::Module {
public:
    CausalConv1dImpl(int64_t channels, int64_t width);
    at::Tensor forward(const at::Tensor & x);
    // The same over a chunk that continues a sequence: `history` holds the last width − 1 inputs
    // before x ([B, width−1, C]; undefined = zeros, the start of a sequence) and is replaced by the
    // last width − 1 inputs after x, so chunked calls equal one call over the whole sequence.
    at::Tensor forward_with_history(const at::Tensor & x, at::Tensor & history);
    at::Tensor weight;  // [C, 1, width]
    at::Tensor bias;    // [C]
};
TORCH_MODULE(CausalConv1d);

class TTTLayerImpl : public torch::nn::Module {
public:
    explicit TTTLayerImpl(TTTConfig config);

    // hidden [B, T, hidden_size] -> [B, T, hidden_size], from the learned initial inner weights.
    at::Tensor forward(const at::Tensor & hidden, TTTMode mode = TTTMode::dual);
    // Continues from `state` (e.g. the state returned for the previous chunk of the same sequences)
    // and returns the output with the state after the last token. Chunks may start and end anywhere.
    std::pair<at::Tensor, TTTState> forward_with_state(const at::Tensor & hidden, TTTState state,
                                                       TTTMode mode = TTTMode::dual);

    // The learned initial state (θ_init tiled over `batch`; differentiable w.r.t. W1.. ), offset 0.
    TTTState initial_state(int64_t batch, c10::ScalarType compute_dtype) const;

    // Building blocks, public for tests. With share_qk, `conv_history` (TTTState::conv_history) is read
    // and advanced; null means a sequence that starts at this call (zero padding).
    TTTInputs project(const at::Tensor & hidden, int64_t offset, at::Tensor * conv_history = nullptr);
    // Runs the inner loop over inputs of one call, advancing `state` (a default-constructed state
    // starts from θ_init); returns [B, H, T, d] in the compute dtype.
    at::Tensor ttt(const TTTInputs & in, TTTState & state, TTTMode mode);
    // [B, H, T, d] inner outputs -> post_norm, gate, o_proj, in the dtype of `hidden`.
    at::Tensor output(const at::Tensor & inner, const at::Tensor & hidden);

    const TTTConfig & config() const { return config_; }

    torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr}, g_proj{nullptr};
    CausalConv1d conv_q{nullptr}, conv_k{nullptr};  // share_qk only (k_proj is then absent)
    torch::nn::LayerNorm post_norm{nullptr};
    at::Tensor learnable_ttt_lr_weight;         // [H, 1, D]
    at::Tensor learnable_ttt_lr_bias;           // [H, 1]
    at::Tensor learnable_token_idx;             // [b] (δ)
    at::Tensor ttt_norm_weight, ttt_norm_bias;  // [H, d]
    at::Tensor W1, b1, W2, b2;                  // [H,d,f] [H,1,f] [H,f,d] [H,1,d] (W2/b2 only for "mlp")

private:
    TTTConfig config_;
};
TORCH_MODULE(TTTLayer);

// Interleaved-pair RoPE (JAX convention, §1.10): pairs (x[2i], x[2i+1]) rotated by pos·θ^(−2i/d).
// x [B, H, T, d], positions [T] (int64); computed in x's dtype.
at::Tensor ttt_rope_interleaved(const at::Tensor & x, const at::Tensor & positions, double theta);

// The same rotation in two steps, so Q and K share one table: ttt_rope_tables gives, for T positions
// and head dim d, cos repeated per pair [T, d] and sin with the pair's signs [T, d] (−sin, +sin), and
// ttt_rope_apply rotates x [..., T, d] with them in three kernels.
std::pair<at::Tensor, at::Tensor> ttt_rope_tables(const at::Tensor & positions, int64_t d, double theta,
                                                  c10::ScalarType dtype);
at::Tensor ttt_rope_apply(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & signed_sin);

}  // namespace ct3
