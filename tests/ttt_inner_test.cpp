// The TTT inner-loop math (models/ttt_inner.h) in float64: the closed-form LayerNorm+L2 and MLP
// gradients against libtorch autograd, the tanh-GELU derivative, and the dual form of one
// mini-batch chunk against the token-by-token primal form (with and without a carried accumulator),
// and the interleaved-pair RoPE.
#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include "models/ttt_inner.h"
#include "models/ttt_layer.h"  // ttt_rope_interleaved

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

double max_diff(const at::Tensor & a, const at::Tensor & b) {
    return (a - b).abs().max().item<double>();
}

// Relative to the larger magnitude: without the inner LayerNorm the values grow large.
double rel_diff(const at::Tensor & a, const at::Tensor & b) {
    return max_diff(a, b) / std::max(1.0, b.abs().max().item<double>());
}

ct3::TTTInnerWeights random_weights(int64_t N, int64_t d, bool mlp, double scale) {
    ct3::TTTInnerWeights w;
    const int64_t f = mlp ? 4 * d : d;
    w.W1 = torch::randn({N, d, f}, kF64) * scale;
    w.b1 = torch::randn({N, 1, f}, kF64) * scale;
    if (mlp) {
        w.W2 = torch::randn({N, f, d}, kF64) * scale;
        w.b2 = torch::randn({N, 1, d}, kF64) * scale;
    }
    return w;
}

// ½‖LN(f_res(K; w)) − (V − K)‖² summed over rows and tokens, written with autograd-visible ops only.
at::Tensor inner_loss(const ct3::TTTInnerWeights & w, const at::Tensor & K, const at::Tensor & V,
                      const at::Tensor & gamma, const at::Tensor & beta) {
    at::Tensor z = torch::matmul(K, w.W1) + w.b1;
    if (w.is_mlp()) z = torch::matmul(torch::gelu(z, "tanh"), w.W2) + w.b2;
    at::Tensor mu = z.mean(-1, true);
    at::Tensor var = (z - mu).pow(2).mean(-1, true);
    at::Tensor y = gamma * (z - mu) / torch::sqrt(var + 1e-6) + beta;
    return 0.5 * (y - (V - K)).pow(2).sum();
}

TEST(TTTInner, LayerNormL2GradientMatchesAutograd) {
    torch::manual_seed(1);
    at::Tensor z = (torch::randn({3, 5, 8}, kF64) * 2.0).requires_grad_(true);
    at::Tensor target = torch::randn({3, 5, 8}, kF64);
    at::Tensor gamma = torch::rand({3, 1, 8}, kF64) + 0.5, beta = torch::randn({3, 1, 8}, kF64) * 0.3;
    at::Tensor loss = 0.5 * (ct3::ttt_layer_norm(z, gamma, beta, 1e-6) - target).pow(2).sum();
    at::Tensor auto_grad = torch::autograd::grad({loss}, {z})[0];
    at::Tensor closed = ct3::ttt_ln_l2_grad(z.detach(), target, gamma, beta, 1e-6);
    EXPECT_LT(max_diff(auto_grad, closed), 1e-10);
    EXPECT_GT(closed.abs().max().item<double>(), 1e-2);  // not a vacuous zero gradient
}

TEST(TTTInner, GeluTanhDerivativeMatchesAutograd) {
    at::Tensor x = torch::linspace(-6.0, 6.0, 101, kF64).requires_grad_(true);
    at::Tensor y = ct3::gelu_tanh(x);
    EXPECT_LT(max_diff(y, torch::gelu(x.detach(), "tanh")), 1e-14);
    at::Tensor g = torch::autograd::grad({y.sum()}, {x})[0];
    EXPECT_LT(max_diff(g, ct3::gelu_tanh_grad(x.detach())), 1e-12);
    // ...and the closed form the references write out: ½(1 + t) + ½x(1 − t²)·c·(1 + 3·0.044715·x²).
    const at::Tensor xd = x.detach();
    const double c = std::sqrt(2.0 / M_PI);
    const at::Tensor t = torch::tanh(c * (xd + 0.044715 * xd.pow(3)));
    const at::Tensor formula = 0.5 * (1.0 + t) + 0.5 * xd * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * xd.pow(2));
    EXPECT_LT(max_diff(ct3::gelu_tanh_grad(xd), formula), 1e-12);
}

// Interleaved-pair RoPE (JAX convention) against a hand-written rotation.
TEST(TTTInner, RopeRotatesInterleavedPairs) {
    auto opts = kF64;
    at::Tensor x = torch::randn({1, 2, 3, 6}, opts);
    at::Tensor pos = torch::tensor(std::vector<int64_t>{0, 3, 7});
    at::Tensor got = ct3::ttt_rope_interleaved(x, pos, 100.0);
    at::Tensor want = x.clone();
    for (int64_t t = 0; t < 3; ++t) {
        for (int64_t i = 0; i < 3; ++i) {
            const double angle = static_cast<double>(pos[t].item<int64_t>()) * std::pow(100.0, -2.0 * i / 6.0);
            at::Tensor x0 = x.select(2, t).select(2, 2 * i), x1 = x.select(2, t).select(2, 2 * i + 1);
            want.select(2, t).select(2, 2 * i).copy_(x0 * std::cos(angle) - x1 * std::sin(angle));
            want.select(2, t).select(2, 2 * i + 1).copy_(x0 * std::sin(angle) + x1 * std::cos(angle));
        }
    }
    EXPECT_LT(max_diff(got, want), 1e-12);
    EXPECT_LT(max_diff(got.select(2, 0), x.select(2, 0)), 1e-15);  // position 0 is the identity
}

class TTTInnerKind : public ::testing::TestWithParam<bool> {};  // param: MLP?

TEST_P(TTTInnerKind, ClosedFormWeightGradientsMatchAutograd) {
    torch::manual_seed(2);
    const int64_t N = 3, r = 6, d = 8;
    ct3::TTTInnerWeights w = random_weights(N, d, GetParam(), 0.4);
    at::Tensor K = torch::randn({N, r, d}, kF64), V = torch::randn({N, r, d}, kF64);
    at::Tensor gamma = torch::rand({N, 1, d}, kF64) + 0.5, beta = torch::randn({N, 1, d}, kF64) * 0.3;
    ct3::TTTInnerGrads g = ct3::ttt_inner_grads(w, K, V, gamma, beta, 1e-6);

    std::vector<at::Tensor> params{w.W1.requires_grad_(true), w.b1.requires_grad_(true)};
    if (w.is_mlp()) {
        params.push_back(w.W2.requires_grad_(true));
        params.push_back(w.b2.requires_grad_(true));
    }
    auto auto_grads = torch::autograd::grad({inner_loss(w, K, V, gamma, beta)}, params);
    // Summed over the tokens of the chunk: ∇W1 = KᵀG1, ∇b1 = ΣG1, ∇W2 = X2ᵀG2, ∇b2 = ΣG2.
    EXPECT_LT(max_diff(auto_grads[0], torch::matmul(K.transpose(1, 2), g.G1)), 1e-10);
    EXPECT_LT(max_diff(auto_grads[1], g.G1.sum(1, true)), 1e-10);
    if (w.is_mlp()) {
        EXPECT_LT(max_diff(auto_grads[2], torch::matmul(g.X2.transpose(1, 2), g.G2)), 1e-10);
        EXPECT_LT(max_diff(auto_grads[3], g.G2.sum(1, true)), 1e-10);
    }
}

TEST_P(TTTInnerKind, DualChunkEqualsPrimalChunk) {
    torch::manual_seed(3);
    const int64_t N = 4, r = 5, d = 6;
    const bool mlp = GetParam();
    ct3::TTTInnerWeights w0 = random_weights(N, d, mlp, 0.4);
    at::Tensor Q = torch::randn({N, r, d}, kF64), K = torch::randn({N, r, d}, kF64);
    at::Tensor V = torch::randn({N, r, d}, kF64);
    at::Tensor tok = torch::rand({r}, kF64) + 0.2, lr = torch::rand({N, r}, kF64) * 0.5;
    at::Tensor gamma = torch::rand({N, 1, d}, kF64) + 0.5, beta = torch::randn({N, 1, d}, kF64) * 0.3;
    // Once from a mini-batch start (no accumulator) and once mid-mini-batch (a carried accumulator).
    for (bool carried : {false, true}) {
        SCOPED_TRACE(carried ? "with accumulator" : "from mini-batch start");
        ct3::TTTInnerWeights acc = carried ? random_weights(N, d, mlp, 0.2) : ct3::TTTInnerWeights{};
        auto dual = ct3::ttt_chunk_dual(w0, acc, Q, K, V, tok, lr, gamma, beta, 1e-6);
        auto primal = ct3::ttt_chunk_primal(w0, acc, Q, K, V, tok, lr, gamma, beta, 1e-6);
        EXPECT_LT(max_diff(dual.out, primal.out), 1e-12);
        EXPECT_LT(max_diff(dual.acc.W1, primal.acc.W1), 1e-12);
        EXPECT_LT(max_diff(dual.acc.b1, primal.acc.b1), 1e-12);
        if (mlp) {
            EXPECT_LT(max_diff(dual.acc.W2, primal.acc.W2), 1e-12);
            EXPECT_LT(max_diff(dual.acc.b2, primal.acc.b2), 1e-12);
        }
        // The per-token weights differ from W0 (the update did something).
        auto frozen = ct3::ttt_chunk_dual(w0, acc, Q, K, V, tok, lr * 0.0, gamma, beta, 1e-6);
        if (!carried) {
            EXPECT_GT(max_diff(dual.out, frozen.out), 1e-4);
        }
    }
}

// The training path ttt_scan_dual == one ttt_chunk_dual + ttt_apply_update per mini-batch: outputs,
// final weights and the outer-loop gradients of every input (autograd through both).
TEST_P(TTTInnerKind, ScanEqualsChunkByChunkWithGradients) {
    const bool mlp = GetParam();
    const int64_t N = 3, b = 4, n = 3, T = n * b, d = 6;
    for (bool inner_norm : {true, false}) {
        SCOPED_TRACE(inner_norm ? "inner LayerNorm" : "no inner LayerNorm");
        torch::manual_seed(inner_norm ? 5 : 6);
        ct3::TTTInnerWeights w0 = random_weights(N, d, mlp, 0.4);
        at::Tensor Q = torch::randn({N, T, d}, kF64), K = torch::randn({N, T, d}, kF64);
        at::Tensor V = torch::randn({N, T, d}, kF64);
        at::Tensor tok = torch::rand({b}, kF64) + 0.2, lr = torch::rand({N, T}, kF64) * 0.5;
        at::Tensor gamma = torch::rand({N, 1, d}, kF64) + 0.5, beta = torch::randn({N, 1, d}, kF64) * 0.3;
        std::vector<at::Tensor> inputs{Q, K, V, tok, lr, w0.W1, w0.b1};
        if (inner_norm) inputs.insert(inputs.end(), {gamma, beta});  // unused without the LayerNorm
        if (mlp) inputs.insert(inputs.end(), {w0.W2, w0.b2});
        for (at::Tensor & x : inputs) x.requires_grad_(true);
        at::Tensor R = torch::randn({N, T, d}, kF64);

        ct3::TTTScanResult scan = ct3::ttt_scan_dual(w0, Q, K, V, tok, lr, gamma, beta, 1e-6, inner_norm);
        std::vector<at::Tensor> outs;
        ct3::TTTInnerWeights w = w0;
        for (int64_t c = 0; c < n; ++c) {
            auto part = [&](const at::Tensor & x) { return x.slice(1, c * b, (c + 1) * b); };
            auto res = ct3::ttt_chunk_dual(w, {}, part(Q), part(K), part(V), tok, part(lr), gamma, beta, 1e-6,
                                           inner_norm);
            outs.push_back(res.out);
            w = ct3::ttt_apply_update(w, res.acc, tok[b - 1]);
        }
        at::Tensor chunked = torch::cat(outs, 1);
        EXPECT_LT(rel_diff(scan.out, chunked), 1e-12);
        EXPECT_LT(rel_diff(scan.w.W1, w.W1), 1e-12);
        EXPECT_LT(rel_diff(scan.w.b1, w.b1), 1e-12);
        if (mlp) {
            EXPECT_LT(rel_diff(scan.w.W2, w.W2), 1e-12);
            EXPECT_LT(rel_diff(scan.w.b2, w.b2), 1e-12);
        }
        EXPECT_GT(max_diff(scan.w.W1, w0.W1), 1e-3);  // the weights moved
        // Gradients through the final weights too: the scan's carry must be differentiable.
        auto objective = [&](const at::Tensor & out, const ct3::TTTInnerWeights & fin) {
            return (out * R).sum() + fin.W1.sum() * 0.3 + (mlp ? fin.W2.sum() * 0.2 : fin.b1.sum() * 0.2);
        };
        auto g_scan = torch::autograd::grad({objective(scan.out, scan.w)}, inputs);
        auto g_chunk = torch::autograd::grad({objective(chunked, w)}, inputs);
        for (size_t i = 0; i < inputs.size(); ++i) {
            SCOPED_TRACE(i);
            EXPECT_LT(rel_diff(g_scan[i], g_chunk[i]), 1e-10);
        }
        EXPECT_GT(g_scan[4].abs().max().item<double>(), 1e-3);  // lr gets a real gradient
    }
}

INSTANTIATE_TEST_SUITE_P(LinearAndMLP, TTTInnerKind, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool> & info) { return info.param ? "MLP" : "Linear"; });

}  // namespace
