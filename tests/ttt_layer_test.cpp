// The TTT-Linear / TTT-MLP layer (models/ttt_layer.h) on tiny random configs in float64: dual ==
// primal (with a trailing partial mini-batch), b = 1 == naive online gradient descent, causality
// inside and across mini-batches, chunked == full at aligned and unaligned boundaries, outer-loop
// gradients vs finite differences, bf16 activations with a float32 inner state, config errors.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "models/error.h"
#include "models/ttt_layer.h"

namespace {

using ct3::TTTMode;

double max_diff(const at::Tensor & a, const at::Tensor & b) {
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

ct3::TTTConfig tiny_config(const std::string & type, int64_t b = 4, bool gate = true) {
    ct3::TTTConfig c;
    c.hidden_size = 16;
    c.num_heads = 2;  // head_dim 8
    c.mini_batch_size = b;
    c.ttt_layer_type = type;
    c.ttt_base_lr = type == "mlp" ? 0.5 : 1.0;
    c.use_gate = gate;
    c.initializer_range = 0.3;  // large enough that the inner updates visibly change the outputs
    return c;
}

// A float64 layer whose norms, biases, δ and lr bias are random too (defaults would hide terms).
ct3::TTTLayer make_layer(const ct3::TTTConfig & c, uint64_t seed, bool random_delta = true) {
    torch::manual_seed(seed);
    ct3::TTTLayer layer(c);
    layer->to(torch::kFloat64);
    torch::NoGradGuard no_grad;
    layer->ttt_norm_weight.uniform_(0.5, 1.5);
    layer->ttt_norm_bias.normal_(0.0, 0.2);
    layer->learnable_ttt_lr_bias.normal_(0.0, 0.5);
    if (random_delta) layer->learnable_token_idx.normal_(0.0, 0.05);
    layer->b1.normal_(0.0, 0.1);
    if (layer->b2.defined()) layer->b2.normal_(0.0, 0.1);
    layer->post_norm->weight.uniform_(0.5, 1.5);
    layer->post_norm->bias.normal_(0.0, 0.1);
    return layer;
}

at::Tensor input(int64_t B, int64_t T, int64_t D) {
    return torch::randn({B, T, D}, torch::TensorOptions().dtype(torch::kFloat64));
}

void expect_states_equal(const ct3::TTTState & a, const ct3::TTTState & b, double tol) {
    EXPECT_EQ(a.offset, b.offset);
    EXPECT_LT(max_diff(a.W1, b.W1), tol);
    EXPECT_LT(max_diff(a.b1, b.b1), tol);
    EXPECT_EQ(a.W2.defined(), b.W2.defined());
    if (a.W2.defined()) {
        EXPECT_LT(max_diff(a.W2, b.W2), tol);
        EXPECT_LT(max_diff(a.b2, b.b2), tol);
    }
    EXPECT_EQ(a.grad_W1.defined(), b.grad_W1.defined());
    if (a.grad_W1.defined() && b.grad_W1.defined()) {
        EXPECT_LT(max_diff(a.grad_W1, b.grad_W1), tol);
    }
}

// The layer's inner model written directly with autograd (independent of ttt_inner), for the naive
// oracles: θ_init per (batch, head) row, f(x; p) = LN(f_res(x; p)) with the learned γ/β, and the
// gradient of ½‖f(k; p) − (v − k)‖² at p.
struct NaiveInner {
    NaiveInner(ct3::TTTLayerImpl & layer, int64_t B, int64_t H, bool mlp_) : mlp(mlp_) {
        auto rows = [&](const at::Tensor & p) {
            return p.unsqueeze(0).expand({B, -1, -1, -1}).reshape({B * H, p.size(1), p.size(2)}).clone();
        };
        initial = {rows(layer.W1), rows(layer.b1)};
        if (mlp) {
            initial.push_back(rows(layer.W2));
            initial.push_back(rows(layer.b2));
        }
        gamma = layer.ttt_norm_weight.unsqueeze(1).repeat({B, 1, 1});
        beta = layer.ttt_norm_bias.unsqueeze(1).repeat({B, 1, 1});
    }
    at::Tensor f(const std::vector<at::Tensor> & p, const at::Tensor & x) const {
        at::Tensor z = torch::matmul(x, p[0]) + p[1];
        if (mlp) z = torch::matmul(torch::gelu(z, "tanh"), p[2]) + p[3];
        at::Tensor mu = z.mean(-1, true);
        return gamma * (z - mu) / torch::sqrt((z - mu).pow(2).mean(-1, true) + 1e-6) + beta;
    }
    std::vector<at::Tensor> grads(const std::vector<at::Tensor> & p, const at::Tensor & k, const at::Tensor & v) const {
        torch::AutoGradMode enable(true);
        std::vector<at::Tensor> leaf;
        for (const auto & t : p) leaf.push_back(t.detach().requires_grad_(true));
        return torch::autograd::grad({0.5 * (f(leaf, k) - (v - k)).pow(2).sum()}, leaf);
    }
    bool mlp;
    std::vector<at::Tensor> initial;
    at::Tensor gamma, beta;
};

class TTTLayerKind : public ::testing::TestWithParam<std::string> {};  // "linear" | "mlp"

TEST_P(TTTLayerKind, DualEqualsPrimalWithTrailingPartialMiniBatch) {
    auto layer = make_layer(tiny_config(GetParam()), 10);
    at::Tensor h = input(2, 11, 16);  // two full mini-batches of 4 and a remainder of 3
    auto dual = layer->forward_with_state(h, {}, TTTMode::dual);
    auto primal = layer->forward_with_state(h, {}, TTTMode::primal);
    EXPECT_LT(max_diff(dual.first, primal.first), 1e-10);
    expect_states_equal(dual.second, primal.second, 1e-10);
    EXPECT_EQ(dual.second.offset, 11);
    ASSERT_TRUE(dual.second.grad_W1.defined());  // 3 tokens into the third mini-batch
    // The state really moved away from θ_init.
    EXPECT_GT(max_diff(dual.second.W1[0], layer->W1.detach()), 1e-3);
}

// With b = 1 (and δ = 0, so tok = 1) the layer is plain online GD with one step per token:
// W_t = W_{t−1} − lr_t ∇ℓ_t(W_{t−1}), z_t = q_t + LN(f_res(q_t; W_t)). Written here with autograd.
TEST_P(TTTLayerKind, MiniBatchOneIsOnlineGradientDescent) {
    const bool mlp = GetParam() == "mlp";
    auto layer = make_layer(tiny_config(GetParam(), /*b=*/1), 11, /*random_delta=*/false);
    const int64_t B = 2, T = 6, H = 2, d = 8;
    at::Tensor h = input(B, T, 16);
    at::Tensor expected_out = layer->forward(h, TTTMode::dual);

    torch::NoGradGuard outer_no_grad;  // the naive loop builds its own small graphs below
    ct3::TTTInputs in = layer->project(h, 0);
    const NaiveInner naive(*layer, B, H, mlp);
    std::vector<at::Tensor> w = naive.initial;
    std::vector<at::Tensor> outs;
    for (int64_t t = 0; t < T; ++t) {
        at::Tensor q = in.XQ.select(2, t).reshape({B * H, 1, d}), k = in.XK.select(2, t).reshape({B * H, 1, d});
        at::Tensor v = in.XV.select(2, t).reshape({B * H, 1, d});
        at::Tensor lr = in.lr.select(2, t).reshape({B * H, 1, 1});
        const std::vector<at::Tensor> grads = naive.grads(w, k, v);
        for (size_t i = 0; i < w.size(); ++i) w[i] = (w[i].detach() - lr * grads[i]).detach();
        outs.push_back(q + naive.f(w, q));
    }
    at::Tensor inner = torch::cat(outs, 1).view({B, H, T, d});
    EXPECT_LT(max_diff(layer->output(inner, h), expected_out), 1e-10);
}

// For b > 1, mini-batch GD written naively with autograd: every gradient of a mini-batch at its
// start weights W0, W_i = W0 − tok_i·Σ_{j≤i} lr_j·∇ℓ_j(W0), the next mini-batch starting from the last
// W_i; the trailing partial mini-batch uses tok_1..tok_r (§1.5, §1.6). Independent of ttt_inner.
TEST_P(TTTLayerKind, EqualsNaiveMiniBatchGradientDescent) {
    const bool mlp = GetParam() == "mlp";
    auto layer = make_layer(tiny_config(GetParam(), /*b=*/4), 19);
    const int64_t B = 2, T = 11, H = 2, d = 8, b = 4;
    at::Tensor h = input(B, T, 16);
    at::Tensor expected_out = layer->forward(h, TTTMode::dual);

    torch::NoGradGuard outer_no_grad;
    ct3::TTTInputs in = layer->project(h, 0);
    const NaiveInner naive(*layer, B, H, mlp);
    std::vector<at::Tensor> w0 = naive.initial;
    const double delta_sum = layer->learnable_token_idx.abs().sum().item<double>();
    ASSERT_GT(delta_sum, 1e-3);  // δ is really non-zero here
    std::vector<at::Tensor> outs;
    for (int64_t start = 0; start < T; start += b) {
        std::vector<at::Tensor> acc, wi;
        for (const auto & p : w0) acc.push_back(torch::zeros_like(p));
        for (int64_t t = start; t < std::min(start + b, T); ++t) {
            at::Tensor q = in.XQ.select(2, t).reshape({B * H, 1, d}), k = in.XK.select(2, t).reshape({B * H, 1, d});
            at::Tensor v = in.XV.select(2, t).reshape({B * H, 1, d});
            at::Tensor lr = in.lr.select(2, t).reshape({B * H, 1, 1});
            const double tok = std::max(
                0.0, 1.0 / static_cast<double>(t - start + 1) + layer->learnable_token_idx[t - start].item<double>());
            const std::vector<at::Tensor> grads = naive.grads(w0, k, v);
            wi.clear();
            for (size_t i = 0; i < w0.size(); ++i) {
                acc[i] = acc[i] + lr * grads[i];
                wi.push_back(w0[i] - tok * acc[i]);
            }
            outs.push_back(q + naive.f(wi, q));
        }
        w0 = wi;
    }
    at::Tensor inner = torch::cat(outs, 1).view({B, H, T, d});
    EXPECT_LT(max_diff(layer->output(inner, h), expected_out), 1e-10);
}

// No hard-coded head dim: head_dim 96 (the 760M config) with b = 16 and a remainder.
TEST_P(TTTLayerKind, HeadDim96DualEqualsPrimal) {
    ct3::TTTConfig c = tiny_config(GetParam(), /*b=*/16);
    c.hidden_size = 192;  // 2 heads of 96
    c.initializer_range = 0.05;
    auto layer = make_layer(c, 20);
    at::Tensor h = input(1, 21, 192);
    auto dual = layer->forward_with_state(h, {}, TTTMode::dual);
    auto primal = layer->forward_with_state(h, {}, TTTMode::primal);
    EXPECT_EQ(dual.second.W1.size(2), 96);
    EXPECT_LT(max_diff(dual.first, primal.first), 1e-10);
    expect_states_equal(dual.second, primal.second, 1e-10);
}

// Changing tokens t >= 6 (the middle of the second mini-batch) leaves outputs t < 6 unchanged.
TEST_P(TTTLayerKind, CausalInsideAndAcrossMiniBatches) {
    auto layer = make_layer(tiny_config(GetParam()), 12);
    at::Tensor h = input(2, 11, 16);
    at::Tensor h2 = h.clone();
    h2.slice(1, 6) += torch::randn_like(h2.slice(1, 6));
    for (TTTMode mode : {TTTMode::dual, TTTMode::primal}) {
        at::Tensor a = layer->forward(h, mode), b = layer->forward(h2, mode);
        EXPECT_LT(max_diff(a.slice(1, 0, 6), b.slice(1, 0, 6)), 1e-12);
        EXPECT_GT(max_diff(a.slice(1, 6), b.slice(1, 6)), 1e-3);
    }
}

// Splitting a sequence into chunks and carrying the state gives the full-sequence result, both at
// mini-batch boundaries (4, 8) and inside mini-batches (3, 6, 7): the state's accumulator carries the
// partial mini-batch. Chunks alternate modes to show they share one state format.
TEST_P(TTTLayerKind, ChunkedEqualsFull) {
    auto layer = make_layer(tiny_config(GetParam()), 13);
    at::Tensor h = input(2, 13, 16);
    auto full = layer->forward_with_state(h, {}, TTTMode::dual);
    for (const std::vector<int64_t> & cuts : {std::vector<int64_t>{4, 8}, std::vector<int64_t>{3, 6, 7, 12}}) {
        SCOPED_TRACE(::testing::Message() << "first cut " << cuts[0]);
        ct3::TTTState state;
        std::vector<at::Tensor> outs;
        int64_t start = 0;
        std::vector<int64_t> ends = cuts;
        ends.push_back(13);
        for (size_t i = 0; i < ends.size(); ++i) {
            auto res = layer->forward_with_state(h.slice(1, start, ends[i]), state,
                                                 i % 2 == 0 ? TTTMode::dual : TTTMode::primal);
            outs.push_back(res.first);
            state = res.second;
            EXPECT_EQ(state.offset, ends[i]);
            EXPECT_EQ(state.grad_W1.defined(), ends[i] % 4 != 0);  // accumulator only mid-mini-batch
            start = ends[i];
        }
        EXPECT_LT(max_diff(torch::cat(outs, 1), full.first), 1e-10);
        expect_states_equal(state, full.second, 1e-10);
    }
}

// Decoding one token at a time (each call a chunk of one, primal form, the state carrying the
// in-mini-batch accumulator) reproduces the full-sequence dual forward (§3).
TEST_P(TTTLayerKind, TokenByTokenEqualsFull) {
    auto layer = make_layer(tiny_config(GetParam()), 17);
    at::Tensor h = input(2, 10, 16);
    auto full = layer->forward_with_state(h, {}, TTTMode::dual);
    ct3::TTTState state;
    std::vector<at::Tensor> outs;
    for (int64_t t = 0; t < 10; ++t) {
        auto res = layer->forward_with_state(h.slice(1, t, t + 1), state, TTTMode::primal);
        outs.push_back(res.first);
        state = res.second;
    }
    EXPECT_LT(max_diff(torch::cat(outs, 1), full.first), 1e-10);
    expect_states_equal(state, full.second, 1e-10);
}

// Outer-loop gradients (autograd through the closed-form inner loop) vs central finite differences.
TEST_P(TTTLayerKind, OuterGradientsMatchFiniteDifferences) {
    auto layer = make_layer(tiny_config(GetParam(), /*b=*/3, /*gate=*/true), 14);
    at::Tensor h = input(1, 7, 16);
    at::Tensor R = torch::randn({1, 7, 16}, torch::TensorOptions().dtype(torch::kFloat64));
    auto loss = [&] { return (layer->forward(h, TTTMode::dual) * R).sum(); };
    layer->zero_grad();
    loss().backward();
    std::vector<std::string> names{"learnable_ttt_lr_weight",
                                   "learnable_ttt_lr_bias",
                                   "learnable_token_idx",
                                   "ttt_norm_weight",
                                   "ttt_norm_bias",
                                   "W1",
                                   "b1",
                                   "q_proj.weight",
                                   "k_proj.weight",
                                   "v_proj.weight",
                                   "g_proj.weight",
                                   "post_norm.weight"};
    if (GetParam() == "mlp") names.insert(names.end(), {"W2", "b2"});
    auto params = layer->named_parameters();
    torch::NoGradGuard no_grad;
    int checked = 0;
    for (const std::string & name : names) {
        SCOPED_TRACE(name);
        at::Tensor p = params[name];
        at::Tensor flat = p.view({-1}), grad = p.grad().view({-1});
        for (int64_t idx : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
            const double orig = flat[idx].item<double>(), eps = 1e-6;
            flat[idx].fill_(orig + eps);
            const double up = loss().item<double>();
            flat[idx].fill_(orig - eps);
            const double down = loss().item<double>();
            flat[idx].fill_(orig);
            const double fd = (up - down) / (2 * eps), ad = grad[idx].item<double>();
            EXPECT_NEAR(ad, fd, 1e-6 * std::max(1.0, std::abs(fd))) << "index " << idx;
            ++checked;
        }
    }
    EXPECT_GE(checked, 36);
}

// bf16 activations: projections in bf16, inner loop and returned state in float32, output bf16 and
// close to the float32 layer's.
TEST_P(TTTLayerKind, Bf16InputKeepsFloat32InnerState) {
    torch::manual_seed(15);
    ct3::TTTLayer ref(tiny_config(GetParam()));
    ct3::TTTLayer low(tiny_config(GetParam()));
    {
        torch::NoGradGuard no_grad;
        auto src = ref->named_parameters();
        for (auto & p : low->named_parameters()) p.value().copy_(src[p.key()]);
    }
    low->to(torch::kBFloat16);
    at::Tensor h = torch::randn({2, 10, 16});
    auto expected = ref->forward_with_state(h, {}, TTTMode::dual);
    auto got = low->forward_with_state(h.to(torch::kBFloat16), {}, TTTMode::dual);
    EXPECT_EQ(got.first.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(got.second.W1.scalar_type(), torch::kFloat32);
    EXPECT_EQ(got.second.grad_W1.scalar_type(), torch::kFloat32);
    const double scale = expected.first.abs().max().item<double>();
    EXPECT_GT(scale, 1e-3);
    EXPECT_LT(max_diff(got.first, expected.first), 0.05 * scale);
    EXPECT_LT(max_diff(got.second.W1, expected.second.W1), 0.05 * expected.second.W1.abs().max().item<double>());
    // float32 itself: dual == primal to float32 rounding.
    auto primal = ref->forward_with_state(h, {}, TTTMode::primal);
    EXPECT_LT(max_diff(primal.first, expected.first), 1e-4 * scale);
}

// CPU autocast (bf16) around the inner loop changes nothing: it runs in float32 regardless.
// Autocast is switched on through its dispatch key, which is how at::autocast does it in 1.13 and 2.x.
TEST_P(TTTLayerKind, InnerLoopIgnoresAutocast) {
    torch::manual_seed(21);
    ct3::TTTLayer layer(tiny_config(GetParam()));
    at::Tensor h = torch::randn({2, 10, 16});
    torch::NoGradGuard no_grad;
    ct3::TTTInputs in = layer->project(h, 0);
    ct3::TTTState plain_state, cast_state;
    at::Tensor plain = layer->ttt(in, plain_state, TTTMode::dual);
    at::Tensor under_autocast;
    {
        const bool was_excluded = c10::impl::tls_is_dispatch_key_excluded(c10::DispatchKey::AutocastCPU);
        c10::impl::tls_set_dispatch_key_excluded(c10::DispatchKey::AutocastCPU, false);
        // Sanity: autocast is really on (a plain matmul comes out in bf16).
        EXPECT_EQ(torch::matmul(h[0], h[0].t()).scalar_type(), torch::kBFloat16);
        under_autocast = layer->ttt(in, cast_state, TTTMode::dual);
        c10::impl::tls_set_dispatch_key_excluded(c10::DispatchKey::AutocastCPU, was_excluded);
    }
    EXPECT_EQ(under_autocast.scalar_type(), torch::kFloat32);
    EXPECT_EQ(cast_state.W1.scalar_type(), torch::kFloat32);
    EXPECT_EQ(max_diff(under_autocast, plain), 0.0);
}

INSTANTIATE_TEST_SUITE_P(LinearAndMLP, TTTLayerKind, ::testing::Values("linear", "mlp"),
                         [](const ::testing::TestParamInfo<std::string> & info) { return info.param; });

TEST(TTTLayer, ParameterNamesAndShapes) {
    ct3::TTTLayer layer(tiny_config("mlp"));
    auto params = layer->named_parameters();
    using Shape = std::vector<int64_t>;
    // clang-format off
    const std::vector<std::pair<std::string, Shape>> expected{
        {"q_proj.weight", {16, 16}}, {"k_proj.weight", {16, 16}}, {"v_proj.weight", {16, 16}},
        {"o_proj.weight", {16, 16}}, {"g_proj.weight", {16, 16}}, {"learnable_ttt_lr_weight", {2, 1, 16}},
        {"learnable_ttt_lr_bias", {2, 1}}, {"learnable_token_idx", {4}}, {"ttt_norm_weight", {2, 8}},
        {"ttt_norm_bias", {2, 8}}, {"post_norm.weight", {16}}, {"post_norm.bias", {16}},
        {"W1", {2, 8, 32}}, {"b1", {2, 1, 32}}, {"W2", {2, 32, 8}}, {"b2", {2, 1, 8}}};
    // clang-format on
    EXPECT_EQ(params.size(), expected.size());
    for (const auto & e : expected) {
        const at::Tensor * p = params.find(e.first);
        ASSERT_NE(p, nullptr) << e.first;
        EXPECT_EQ(p->sizes().vec(), e.second) << e.first;
    }
}

// project(): RoPE by position within the mini-batch, lr = η_base·sigmoid(x·θ_h + β_h)/d, tok = max(0, 1/i + δ).
TEST(TTTLayer, ProjectUsesInMiniBatchPositionsAndReferenceRates) {
    auto layer = make_layer(tiny_config("linear"), 18);
    at::Tensor h = input(1, 9, 16);
    h.select(1, 5).copy_(h.select(1, 1));  // same token at positions 1 and 5 = 1 + b
    h.select(1, 2).copy_(h.select(1, 1));  // ... and at position 2
    torch::NoGradGuard no_grad;
    ct3::TTTInputs in = layer->project(h, 0);
    EXPECT_LT(max_diff(in.XQ.select(2, 1), in.XQ.select(2, 5)), 1e-14);
    EXPECT_LT(max_diff(in.XK.select(2, 1), in.XK.select(2, 5)), 1e-14);
    EXPECT_GT(max_diff(in.XQ.select(2, 1), in.XQ.select(2, 2)), 1e-6);
    // An offset shifts the positions: token 0 of a call at offset 7 sits at in-mini-batch position 3.
    ct3::TTTInputs shifted = layer->project(h.slice(1, 0, 1), 7);
    ct3::TTTInputs at3 =
        layer->project(torch::cat({h.slice(1, 3, 4), h.slice(1, 3, 4), h.slice(1, 3, 4), h.slice(1, 0, 1)}, 1), 0);
    EXPECT_LT(max_diff(shifted.XQ.select(2, 0), at3.XQ.select(2, 3)), 1e-14);
    for (int64_t hd = 0; hd < 2; ++hd) {
        for (int64_t t = 0; t < 9; ++t) {
            const double logit = (h[0][t] * layer->learnable_ttt_lr_weight[hd][0]).sum().item<double>() +
                                 layer->learnable_ttt_lr_bias[hd][0].item<double>();
            EXPECT_NEAR(in.lr[0][hd][t].item<double>(), 1.0 / (1.0 + std::exp(-logit)) / 8.0, 1e-14);
        }
    }
    for (int64_t i = 0; i < 4; ++i) {
        const double want = std::max(0.0, 1.0 / (i + 1) + layer->learnable_token_idx[i].item<double>());
        EXPECT_NEAR(in.tok[i].item<double>(), want, 1e-15);
    }
}

TEST(TTTLayer, ConfigValidationNamesTheField) {
    auto expect_error = [](const std::function<void(ct3::TTTConfig &)> & edit, const std::string & field) {
        ct3::TTTConfig c = tiny_config("linear");
        edit(c);
        try {
            c.validate("test.json");
            ADD_FAILURE() << "no error for " << field;
        } catch (const ct3::Error & e) {
            EXPECT_EQ(e.kind(), ct3::ErrorKind::invalid_argument);
            EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
        }
    };
    expect_error([](ct3::TTTConfig & c) { c.hidden_size = 0; }, "hidden_size");
    expect_error([](ct3::TTTConfig & c) { c.num_heads = 3; }, "num_heads");
    expect_error([](ct3::TTTConfig & c) { c.num_heads = 16; }, "head_dim");  // head_dim 1: odd
    expect_error([](ct3::TTTConfig & c) { c.mini_batch_size = 0; }, "mini_batch_size");
    expect_error([](ct3::TTTConfig & c) { c.ttt_base_lr = -1; }, "ttt_base_lr");
    expect_error([](ct3::TTTConfig & c) { c.ttt_layer_type = "rnn"; }, "ttt_layer_type");
    expect_error([](ct3::TTTConfig & c) { c.rope_theta = 0; }, "rope_theta");
    ct3::TTTConfig bad = tiny_config("linear");
    bad.num_heads = 5;
    EXPECT_THROW(ct3::TTTLayer{bad}, ct3::Error);  // the constructor validates
}

TEST(TTTLayer, RejectsBadInputsAndStates) {
    auto layer = make_layer(tiny_config("linear"), 16);
    EXPECT_THROW(layer->forward(input(1, 5, 12)), ct3::Error);  // wrong width
    auto res = layer->forward_with_state(input(2, 5, 16), {});
    EXPECT_THROW(layer->forward_with_state(input(3, 2, 16), res.second), ct3::Error);  // batch mismatch
    ct3::TTTState bad;
    bad.offset = 4;
    EXPECT_THROW(layer->forward_with_state(input(2, 2, 16), bad), ct3::Error);  // offset without weights
}

}  // namespace
