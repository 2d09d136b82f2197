// The inner loop of the TTT-Linear / TTT-MLP layers (Sun et al. 2024, "Learning to (Learn at Test
// Time)"), exactly as the reference code computes it (see ../shared/reference/ttt_layers.md §1):
// an inner model f(x) = x + LN(f_res(x)) per (sequence, head), trained at test time by one
// gradient step per mini-batch on ½‖LN(f_res(k)) − (v − k)‖², with all gradients of a mini-batch
// taken at the weights of the mini-batch start and combined through the b×b learning-rate matrix
// E[i, j] = tok_i · lr_j (row i = token whose weights are formed, column j = gradient added).
//
// Everything here is plain differentiable tensor algebra on [N, r, ·] batches (N = batch × heads),
// so libtorch autograd through it yields the outer-loop gradients (gradients of gradients) with no
// autograd inside the layer. The closed-form inner gradients are shared by the two computation
// paths: the dual form (one mini-batch chunk as a few matmuls) and the primal form (token by token,
// materialising every W_i, as decoding needs).
//
// Row-vector convention of the reference code: Z = X·W + b, W [N, d_in, d_out], b [N, 1, d_out].
//
// `inner_norm` (default true, the reference) selects f(x) = x + LN(f_res(x)) with the loss
// ½‖LN(f_res(k)) − (v − k)‖²; false is the paper's Table 1 ablation "without LN and residual in f":
// f(x) = f_res(x), loss ½‖f_res(k) − v‖², closed-form gradient ∂ℓ/∂Z = Z − v, and gamma/beta unused
// (may be undefined).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace ct3 {

// Inner weights of every (sequence, head), flattened to N = B·H rows. W2/b2 are undefined for
// TTT-Linear. Used both for "weights at the start of the current mini-batch" and for the gradient
// accumulator Σ_{j≤p} lr_j ∇ℓ_j of the tokens already seen in it (§3; tok is not in the sum).
struct TTTInnerWeights {
    at::Tensor W1, b1, W2, b2;
    bool is_mlp() const { return W2.defined(); }
    bool defined() const { return W1.defined(); }
};

// LayerNorm over the last dim with per-head scale/shift gamma/beta ([N or 1, 1, f]).
at::Tensor ttt_layer_norm(const at::Tensor & z, const at::Tensor & gamma, const at::Tensor & beta, double eps);

// ∂/∂Z of ½‖LN(Z)·γ + β − target‖² in closed form (PT ln_fused_l2_bwd; §1.4):
// G = (d·g − Σg − x̂ ⊙ Σ(g ⊙ x̂)) / (d·s), g = γ ⊙ (y − target), x̂ = (Z − μ)/s, s = √(σ² + eps).
at::Tensor ttt_ln_l2_grad(const at::Tensor & z, const at::Tensor & target, const at::Tensor & gamma,
                          const at::Tensor & beta, double eps);

// GELU with the tanh approximation (the references' choice) and its derivative.
at::Tensor gelu_tanh(const at::Tensor & x);
at::Tensor gelu_tanh_grad(const at::Tensor & x);

// Per-token gradients of the inner loss at `w` for keys K and values V [N, r, d]:
// G1 = ∂ℓ/∂Z1 (and for the MLP X2 = gelu(Z1) and G2 = ∂ℓ/∂Z2). ∇W1 = Kᵀ·G1, ∇b1 = G1, ∇W2 = X2ᵀ·G2, ∇b2 = G2.
struct TTTInnerGrads {
    at::Tensor G1, X2, G2;
};
TTTInnerGrads ttt_inner_grads(const TTTInnerWeights & w, const at::Tensor & K, const at::Tensor & V,
                              const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm = true);

// One chunk of one mini-batch: tokens at in-mini-batch positions p+1 .. p+r (p + r <= b).
//   w0   weights at the start of the mini-batch; acc the accumulator of tokens 1..p (undefined = zero);
//   tok  [r] the per-position scales tok_{p+1..p+r}; lr [N, r] the token-dependent rates.
// Returns the outputs Q + LN(f_res(Q; W_i)) (f_res(Q; W_i) without inner_norm) [N, r, d] and the accumulator after token p+r. The caller
// folds the accumulator into the weights (W ← W0 − tok_b · acc) when the mini-batch is complete.
struct TTTChunkResult {
    at::Tensor out;
    TTTInnerWeights acc;
};
TTTChunkResult ttt_chunk_dual(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & Q,
                              const at::Tensor & K, const at::Tensor & V, const at::Tensor & tok, const at::Tensor & lr,
                              const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm = true);
TTTChunkResult ttt_chunk_primal(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & Q,
                                const at::Tensor & K, const at::Tensor & V, const at::Tensor & tok,
                                const at::Tensor & lr, const at::Tensor & gamma, const at::Tensor & beta, double eps,
                                bool inner_norm = true);

// Whole mini-batches in one call, the training path: Q, K, V [N, n·b, d] with b = tok.size(0), lr
// [N, n·b], starting at a mini-batch boundary with weights w0 (no accumulator). Computes exactly
// what n calls of ttt_chunk_dual + ttt_apply_update compute, but with everything that does not
// depend on the running weights (the causal E ⊙ (Q·Kᵀ + 1) matrices, the reconstruction target, the
// update scales, the output LayerNorm and residual) done once for all mini-batches, and each
// mini-batch step in a handful of fused batched matmuls: on a GPU the sequential part is
// launch-bound, so the number of ops per mini-batch (forward and autograd backward) is its cost.
// Returns the outputs [N, n·b, d] and the weights after the last mini-batch.
struct TTTScanResult {
    at::Tensor out;
    TTTInnerWeights w;
};
TTTScanResult ttt_scan_dual(const TTTInnerWeights & w0, const at::Tensor & Q, const at::Tensor & K,
                            const at::Tensor & V, const at::Tensor & tok, const at::Tensor & lr,
                            const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm = true);

// W0 − scale · acc for every tensor (scale [] or broadcastable); acc undefined returns w0.
TTTInnerWeights ttt_apply_update(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & scale);

}  // namespace ct3
