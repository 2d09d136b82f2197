#include "models/ttt_inner.h"

#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace ct3 {

namespace {

// x̂ = (z − μ)/√(σ² + eps) over the last dim, σ² biased (as the references): LayerNorm without
// weight and bias, one kernel.
at::Tensor normalised(const at::Tensor & z, double eps) {
    return std::get<0>(at::native_layer_norm(z, {z.size(-1)}, c10::nullopt, c10::nullopt, eps));
}

// ∂/∂Z of ½‖LN(Z)·γ + β − target‖² in closed form (PT ln_fused_l2_bwd; §1.4), in few ops: with
// γγ = γ² and γbt = γ ⊙ (β − target) (the scan computes them once for all mini-batches),
// g = γγ ⊙ x̂ + γbt = ∂ℓ/∂x̂ and G = (g − mean g − x̂ ⊙ mean(g ⊙ x̂)) / s, s = √(σ² + eps): the
// reference's (d·g − Σg − x̂ Σ(g ⊙ x̂)) / (d·s) divided through by d. The statistics are computed
// here with autograd-visible ops (LayerNorm's own mean/rstd outputs are not differentiable).
at::Tensor ln_l2_grad(const at::Tensor & z, const at::Tensor & gamma_sq, const at::Tensor & gamma_beta_target,
                      double eps) {
    at::Tensor xhat = normalised(z, eps);
    at::Tensor rstd = at::rsqrt(at::var(z, at::IntArrayRef{-1}, /*unbiased=*/false, /*keepdim=*/true) + eps);
    at::Tensor g = at::addcmul(gamma_beta_target, gamma_sq, xhat);
    at::Tensor G = g - g.mean(-1, /*keepdim=*/true);
    G = at::addcmul(G, xhat, (g * xhat).mean(-1, /*keepdim=*/true), /*value=*/-1);
    return G * rstd;
}

// Σ_{j≤i}-accumulated update of one inner linear map, evaluated on the query-side inputs (dual form):
//   Z̄_i = X̄_i·(W0 − tok_i·(accW + Σ_{j≤i} lr_j·Xk_jᵀG_j)) + b0 − tok_i·(accb + Σ_{j≤i} lr_j·G_j)
//       = X̄_i·W0 + b0 − tok_i·(X̄_i·accW + accb) − Σ_j tril(E ⊙ (X̄·Xkᵀ + 1))_{ij}·G_j
// The "+1" carries the bias gradient through the same matmul. E[i,j] = tok_i·lr_j (§1.5, §1.7).
at::Tensor dual_linear(const at::Tensor & Xq, const at::Tensor & Xk, const at::Tensor & G, const at::Tensor & W0,
                       const at::Tensor & b0, const at::Tensor & accW, const at::Tensor & accb, const at::Tensor & tok,
                       const at::Tensor & lr) {
    const int64_t r = Xq.size(1);
    at::Tensor tok_col = tok.view({1, r, 1});
    at::Tensor E = tok_col * lr.unsqueeze(1);  // [N, r, r]
    // tril keeps the chunk causal: token i never sees the gradient of a later token j > i.
    at::Tensor A = ((torch::matmul(Xq, Xk.transpose(1, 2)) + 1.0) * E).tril();
    at::Tensor Z = torch::matmul(Xq, W0) + b0 - torch::matmul(A, G);
    if (accW.defined()) Z = Z - tok_col * (torch::matmul(Xq, accW) + accb);
    return Z;
}

// acc + Σ_j lr_j·(Xk_jᵀG_j, G_j) over the chunk: what the next chunk of the mini-batch starts from.
std::pair<at::Tensor, at::Tensor> accumulate(const at::Tensor & Xk, const at::Tensor & G, const at::Tensor & lr,
                                             const at::Tensor & accW, const at::Tensor & accb) {
    at::Tensor lG = lr.unsqueeze(-1) * G;
    at::Tensor dW = torch::matmul(Xk.transpose(1, 2), lG);
    at::Tensor db = lG.sum(1, /*keepdim=*/true);
    if (accW.defined()) return {accW + dW, accb + db};
    return {dW, db};
}

void check_chunk(const TTTInnerWeights & w0, const at::Tensor & Q, const at::Tensor & K, const at::Tensor & V,
                 const at::Tensor & tok, const at::Tensor & lr) {
    TORCH_CHECK(w0.defined() && Q.dim() == 3 && K.sizes() == Q.sizes() && V.sizes() == Q.sizes(),
                "ttt chunk: Q, K, V must be [N, r, d] of one shape");
    TORCH_CHECK(tok.dim() == 1 && tok.size(0) == Q.size(1) && lr.dim() == 2 && lr.size(0) == Q.size(0) &&
                    lr.size(1) == Q.size(1),
                "ttt chunk: tok must be [r] and lr [N, r]");
}

}  // namespace

at::Tensor ttt_layer_norm(const at::Tensor & z, const at::Tensor & gamma, const at::Tensor & beta, double eps) {
    // The per-(sequence, head) scale/shift cannot be LayerNorm's [f] weight, so it is applied after.
    return at::addcmul(beta, gamma, normalised(z, eps));
}

at::Tensor ttt_ln_l2_grad(const at::Tensor & z, const at::Tensor & target, const at::Tensor & gamma,
                          const at::Tensor & beta, double eps) {
    return ln_l2_grad(z, gamma * gamma, gamma * (beta - target), eps);
}

// The built-in tanh GELU and its backward are single kernels (and differentiable again, which the
// outer loop needs through the inner gradients); the decode path runs them once per token and layer.
at::Tensor gelu_tanh(const at::Tensor & x) {
    return at::gelu(x, "tanh");
}

at::Tensor gelu_tanh_grad(const at::Tensor & x) {
    return at::gelu_backward(at::ones_like(x), x, "tanh");
}

TTTInnerGrads ttt_inner_grads(const TTTInnerWeights & w, const at::Tensor & K, const at::Tensor & V,
                              const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm) {
    // The residual inside f makes the reconstruction target V − K (§1.3); without it the target is V
    // and ½‖Z − V‖² has the plain gradient Z − V.
    at::Tensor target = inner_norm ? V - K : V;
    auto out_grad = [&](const at::Tensor & z) {
        return inner_norm ? ttt_ln_l2_grad(z, target, gamma, beta, eps) : z - target;
    };
    TTTInnerGrads g;
    at::Tensor Z1 = torch::matmul(K, w.W1) + w.b1;
    if (!w.is_mlp()) {
        g.G1 = out_grad(Z1);
        return g;
    }
    g.X2 = gelu_tanh(Z1);
    at::Tensor Z2 = torch::matmul(g.X2, w.W2) + w.b2;
    g.G2 = out_grad(Z2);
    g.G1 = torch::matmul(g.G2, w.W2.transpose(1, 2)) * gelu_tanh_grad(Z1);
    return g;
}

TTTChunkResult ttt_chunk_dual(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & Q,
                              const at::Tensor & K, const at::Tensor & V, const at::Tensor & tok, const at::Tensor & lr,
                              const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm) {
    check_chunk(w0, Q, K, V, tok, lr);
    // All gradients of the mini-batch are taken at its start weights w0, never at the running W.
    TTTInnerGrads g = ttt_inner_grads(w0, K, V, gamma, beta, eps, inner_norm);
    TTTChunkResult res;
    at::Tensor Z1 = dual_linear(Q, K, g.G1, w0.W1, w0.b1, acc.W1, acc.b1, tok, lr);
    std::tie(res.acc.W1, res.acc.b1) = accumulate(K, g.G1, lr, acc.W1, acc.b1);
    at::Tensor Z = Z1;
    if (w0.is_mlp()) {
        // Second layer: its query-side input is gelu of the *updated* first layer's output.
        Z = dual_linear(gelu_tanh(Z1), g.X2, g.G2, w0.W2, w0.b2, acc.W2, acc.b2, tok, lr);
        std::tie(res.acc.W2, res.acc.b2) = accumulate(g.X2, g.G2, lr, acc.W2, acc.b2);
    }
    res.out = inner_norm ? Q + ttt_layer_norm(Z, gamma, beta, eps) : Z;
    return res;
}

TTTChunkResult ttt_chunk_primal(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & Q,
                                const at::Tensor & K, const at::Tensor & V, const at::Tensor & tok,
                                const at::Tensor & lr, const at::Tensor & gamma, const at::Tensor & beta, double eps,
                                bool inner_norm) {
    check_chunk(w0, Q, K, V, tok, lr);
    TTTInnerGrads g = ttt_inner_grads(w0, K, V, gamma, beta, eps, inner_norm);
    const int64_t r = Q.size(1);
    const bool mlp = w0.is_mlp();
    auto zeros_or = [](const at::Tensor & a, const at::Tensor & like) {
        return a.defined() ? a : torch::zeros_like(like);
    };
    at::Tensor aW1 = zeros_or(acc.W1, w0.W1), ab1 = zeros_or(acc.b1, w0.b1);
    at::Tensor aW2, ab2;
    if (mlp) aW2 = zeros_or(acc.W2, w0.W2), ab2 = zeros_or(acc.b2, w0.b2);
    std::vector<at::Tensor> outs;
    outs.reserve(static_cast<size_t>(r));
    for (int64_t i = 0; i < r; ++i) {
        // Token i: add its lr-weighted gradient (taken at w0) to the accumulator, materialise
        // W_i = W0 − tok_i·acc_i and evaluate the query with it (§1.6, and the decode step of §3).
        at::Tensor lr_i = lr.slice(1, i, i + 1).unsqueeze(-1);  // [N, 1, 1]
        at::Tensor tok_i = tok[i];
        at::Tensor k_i = K.slice(1, i, i + 1), q_i = Q.slice(1, i, i + 1);
        at::Tensor lG1 = lr_i * g.G1.slice(1, i, i + 1);
        aW1 = aW1 + torch::matmul(k_i.transpose(1, 2), lG1);
        ab1 = ab1 + lG1;
        at::Tensor z = torch::matmul(q_i, w0.W1 - tok_i * aW1) + (w0.b1 - tok_i * ab1);
        if (mlp) {
            at::Tensor lG2 = lr_i * g.G2.slice(1, i, i + 1);
            aW2 = aW2 + torch::matmul(g.X2.slice(1, i, i + 1).transpose(1, 2), lG2);
            ab2 = ab2 + lG2;
            z = torch::matmul(gelu_tanh(z), w0.W2 - tok_i * aW2) + (w0.b2 - tok_i * ab2);
        }
        outs.push_back(inner_norm ? q_i + ttt_layer_norm(z, gamma, beta, eps) : z);
    }
    TTTChunkResult res;
    res.out = torch::cat(outs, 1);
    res.acc.W1 = aW1;
    res.acc.b1 = ab1;
    res.acc.W2 = aW2;
    res.acc.b2 = ab2;
    return res;
}

TTTScanResult ttt_scan_dual(const TTTInnerWeights & w0, const at::Tensor & Q, const at::Tensor & K,
                            const at::Tensor & V, const at::Tensor & tok, const at::Tensor & lr,
                            const at::Tensor & gamma, const at::Tensor & beta, double eps, bool inner_norm) {
    TORCH_CHECK(w0.defined() && Q.dim() == 3 && K.sizes() == Q.sizes() && V.sizes() == Q.sizes(),
                "ttt scan: Q, K, V must be [N, T, d] of one shape");
    const int64_t N = Q.size(0), T = Q.size(1), d = Q.size(2), b = tok.size(0);
    TORCH_CHECK(tok.dim() == 1 && b > 0 && T % b == 0 && lr.dim() == 2 && lr.size(0) == N && lr.size(1) == T,
                "ttt scan: tok must be [b] and lr [N, T] with T a multiple of b");
    const int64_t n = T / b;
    const bool mlp = w0.is_mlp();
    auto mini_batches = [&](const at::Tensor & x) { return x.reshape({N, n, b, x.size(-1)}); };
    const at::Tensor Qc = mini_batches(Q), Kc = mini_batches(K);
    const at::Tensor lrc = lr.reshape({N, n, b});
    // E[i, j] = tok_i·lr_j, causal (a token never sees a later token's gradient), and the "+1" that
    // carries the bias gradient folded in as E ⊙ S + E.
    const at::Tensor E = (tok.view({1, 1, b, 1}) * lrc.unsqueeze(2)).tril();  // [N, n, b, b]
    const at::Tensor A1 = at::addcmul(E, at::matmul(Qc, Kc.transpose(-1, -2)), E);
    // The mini-batch's update is its last row of E: W ← W − Σ_j tok_b·lr_j·∇ℓ_j (§1.6).
    const at::Tensor update_scale = (tok[b - 1] * lrc).unsqueeze(-1);  // [N, n, b, 1]
    const at::Tensor target = mini_batches(inner_norm ? V - K : V);
    at::Tensor gamma_sq, gamma_beta_target;
    if (inner_norm) gamma_sq = gamma * gamma, gamma_beta_target = gamma.unsqueeze(1) * (beta.unsqueeze(1) - target);
    auto out_grad = [&](const at::Tensor & z, int64_t c) {
        return inner_norm ? ln_l2_grad(z, gamma_sq, gamma_beta_target.select(1, c), eps)
                          : z - target.select(1, c);
    };
    const std::vector<at::Tensor> Qs = Qc.unbind(1), Ks = Kc.unbind(1), Es = E.unbind(1), A1s = A1.unbind(1),
                                  scales = update_scale.unbind(1);
    at::Tensor W1 = w0.W1, b1 = w0.b1, W2 = w0.W2, b2 = w0.b2;
    std::vector<at::Tensor> outs;
    outs.reserve(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) {
        const at::Tensor & q = Qs[c], & k = Ks[c];
        // Gradients at the mini-batch's start weights, then the dual-form outputs (dual_linear).
        at::Tensor Z1 = at::baddbmm(b1, k, W1);
        at::Tensor G1, X2, G2, Z;
        if (!mlp) {
            G1 = out_grad(Z1, c);
            Z = at::baddbmm(at::baddbmm(b1, q, W1), A1s[c], G1, 1, -1);
        } else {
            X2 = at::gelu(Z1, "tanh");
            G2 = out_grad(at::baddbmm(b2, X2, W2), c);
            G1 = at::gelu_backward(at::bmm(G2, W2.transpose(1, 2)), Z1, "tanh");
            at::Tensor X2q = at::gelu(at::baddbmm(at::baddbmm(b1, q, W1), A1s[c], G1, 1, -1), "tanh");
            at::Tensor A2 = at::addcmul(Es[c], at::bmm(X2q, X2.transpose(1, 2)), Es[c]);
            Z = at::baddbmm(at::baddbmm(b2, X2q, W2), A2, G2, 1, -1);
        }
        outs.push_back(Z);
        at::Tensor U1 = scales[c] * G1;
        W1 = at::baddbmm(W1, k.transpose(1, 2), U1, 1, -1);
        b1 = b1 - U1.sum(1, /*keepdim=*/true);
        if (mlp) {
            at::Tensor U2 = scales[c] * G2;
            W2 = at::baddbmm(W2, X2.transpose(1, 2), U2, 1, -1);
            b2 = b2 - U2.sum(1, /*keepdim=*/true);
        }
    }
    TTTScanResult res;
    at::Tensor Z = at::stack(outs, 1).reshape({N, T, d});
    res.out = inner_norm ? Q + ttt_layer_norm(Z, gamma, beta, eps) : Z;
    res.w = TTTInnerWeights{W1, b1, W2, b2};
    return res;
}

TTTInnerWeights ttt_apply_update(const TTTInnerWeights & w0, const TTTInnerWeights & acc, const at::Tensor & scale) {
    if (!acc.defined()) return w0;
    TTTInnerWeights w;
    w.W1 = w0.W1 - scale * acc.W1;
    w.b1 = w0.b1 - scale * acc.b1;
    if (w0.is_mlp()) {
        w.W2 = w0.W2 - scale * acc.W2;
        w.b2 = w0.b2 - scale * acc.b2;
    }
    return w;
}

}  // namespace ct3
