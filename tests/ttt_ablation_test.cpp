// The ablation switches of the TTT layer (TTTConfig::inner_norm, learnable_lr, learnable_w0; the
// paper's Table 1 path, ttt_layers.md §4.1) in float64: each switch changes the output; dual ==
// primal for every combination (with a trailing partial mini-batch); the closed-form inner gradient
// without LN equals autograd; with the "linear attention" row's switches and b = T the layer's inner
// loop equals causal linear attention computed directly (Theorem 1, §1.12); config.json round trip
// and validation of the switches.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "models/error.h"
#include "models/ttt_inner.h"
#include "models/ttt_layer.h"
#include "models/ttt_loader.h"
#include "models/ttt_model.h"

namespace {

using ct3::TTTMode;

double max_diff(const at::Tensor & a, const at::Tensor & b) {
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

ct3::TTTConfig config(const std::string & type, int64_t b, bool norm, bool learn_lr, bool learn_w0) {
    ct3::TTTConfig c;
    c.hidden_size = 16;
    c.num_heads = 2;  // head_dim 8
    c.mini_batch_size = b;
    c.ttt_layer_type = type;
    c.ttt_base_lr = type == "mlp" ? 0.5 : 1.0;
    c.initializer_range = 0.3;
    c.inner_norm = norm;
    c.learnable_lr = learn_lr;
    c.learnable_w0 = learn_w0;
    return c;
}

// Same seed => same parameters whatever the switches (they change no parameter shape).
ct3::TTTLayer make_layer(const ct3::TTTConfig & c, uint64_t seed = 7) {
    torch::manual_seed(seed);
    ct3::TTTLayer layer(c);
    layer->to(torch::kFloat64);
    torch::NoGradGuard no_grad;
    layer->ttt_norm_weight.uniform_(0.5, 1.5);
    layer->ttt_norm_bias.normal_(0.0, 0.2);
    layer->learnable_ttt_lr_bias.normal_(0.0, 0.5);
    layer->learnable_token_idx.normal_(0.0, 0.05);
    layer->b1.normal_(0.0, 0.1);
    return layer;
}

at::Tensor input(int64_t B, int64_t T, int64_t D, uint64_t seed = 3) {
    torch::manual_seed(seed);
    return torch::randn({B, T, D}, torch::TensorOptions().dtype(torch::kFloat64));
}

// (type, inner_norm, learnable_lr, learnable_w0)
using Switches = std::tuple<std::string, bool, bool, bool>;

class TTTAblationCombo : public ::testing::TestWithParam<Switches> {};

TEST_P(TTTAblationCombo, DualEqualsPrimalWithTrailingPartialMiniBatch) {
    const auto [type, norm, lr, w0] = GetParam();
    ct3::TTTLayer layer = make_layer(config(type, 4, norm, lr, w0));
    const at::Tensor x = input(2, 10, 16);  // two full mini-batches and a remainder of 2
    const at::Tensor dual = layer->forward(x, TTTMode::dual), primal = layer->forward(x, TTTMode::primal);
    EXPECT_LT(max_diff(dual, primal), 1e-10);
    // Chunked continuation (a state that starts inside a mini-batch) equals the full pass too.
    auto [first, state] = layer->forward_with_state(x.slice(1, 0, 3), ct3::TTTState{}, TTTMode::dual);
    auto second = layer->forward_with_state(x.slice(1, 3), state, TTTMode::primal).first;
    EXPECT_LT(max_diff(torch::cat({first, second}, 1), dual), 1e-10);
}

std::vector<Switches> all_combinations() {
    std::vector<Switches> out;
    for (const char * type : {"linear", "mlp"}) {
        for (bool norm : {true, false}) {
            for (bool lr : {true, false}) {
                for (bool w0 : {true, false}) {
                    if (!w0 && std::string(type) == "mlp") continue;  // refused by validate()
                    out.emplace_back(type, norm, lr, w0);
                }
            }
        }
    }
    return out;
}

INSTANTIATE_TEST_SUITE_P(AllSwitches, TTTAblationCombo, ::testing::ValuesIn(all_combinations()),
                         [](const ::testing::TestParamInfo<Switches> & info) {
                             return std::get<0>(info.param) + (std::get<1>(info.param) ? "_norm" : "_nonorm") +
                                    (std::get<2>(info.param) ? "_learnlr" : "_fixedlr") +
                                    (std::get<3>(info.param) ? "_learnw0" : "_zerow0");
                         });

TEST(TTTAblation, EachSwitchChangesTheOutput) {
    const at::Tensor x = input(1, 9, 16);
    const at::Tensor base = make_layer(config("linear", 4, true, true, true))->forward(x);
    for (int which = 0; which < 3; ++which) {
        const at::Tensor out =
            make_layer(config("linear", 4, which != 0, which != 1, which != 2))->forward(x);
        EXPECT_GT(max_diff(out, base), 1e-3) << "switch " << which << " made no difference";
    }
    // ... and in TTT-MLP (no learnable_w0 there).
    const at::Tensor mlp = make_layer(config("mlp", 4, true, true, true))->forward(x);
    EXPECT_GT(max_diff(make_layer(config("mlp", 4, false, true, true))->forward(x), mlp), 1e-3);
    EXPECT_GT(max_diff(make_layer(config("mlp", 4, true, false, true))->forward(x), mlp), 1e-3);
}

TEST(TTTAblation, FixedLrUsesBaseOverHeadDimAndRunningMean) {
    ct3::TTTLayer layer = make_layer(config("linear", 4, true, false, true));
    const ct3::TTTInputs in = layer->project(input(2, 6, 16), /*offset=*/0);
    EXPECT_LT(max_diff(in.lr, torch::full({2, 2, 6}, 1.0 / 8, torch::kFloat64)), 1e-15);
    const at::Tensor expected = torch::tensor({1.0, 1.0 / 2, 1.0 / 3, 1.0 / 4}, torch::kFloat64);
    EXPECT_LT(max_diff(in.tok, expected), 1e-15);  // δ (random here) is not used
}

TEST(TTTAblation, ClosedFormGradientWithoutNormMatchesAutograd) {
    for (const char * type : {"linear", "mlp"}) {
        torch::manual_seed(11);
        const int64_t N = 3, r = 5, d = 4, f = std::string(type) == "mlp" ? 8 : 4;
        auto opts = torch::TensorOptions().dtype(torch::kFloat64);
        ct3::TTTInnerWeights w{torch::randn({N, d, f}, opts).requires_grad_(), torch::randn({N, 1, f}, opts).requires_grad_(),
                               {}, {}};
        if (f != d) {
            w.W2 = torch::randn({N, f, d}, opts).requires_grad_();
            w.b2 = torch::randn({N, 1, d}, opts).requires_grad_();
        }
        const at::Tensor K = torch::randn({N, r, d}, opts), V = torch::randn({N, r, d}, opts);
        const ct3::TTTInnerGrads g = ct3::ttt_inner_grads(w, K, V, at::Tensor(), at::Tensor(), 1e-6, false);
        // Per token: ½‖f_res(k_t) − v_t‖², summed; ∂/∂W1 of the sum = Σ_t k_tᵀ G1_t.
        at::Tensor Z = torch::matmul(K, w.W1) + w.b1;
        if (w.W2.defined()) Z = torch::matmul(ct3::gelu_tanh(Z), w.W2) + w.b2;
        const at::Tensor loss = 0.5 * (Z - V).pow(2).sum();
        std::vector<at::Tensor> params{w.W1, w.b1};
        if (w.W2.defined()) params.insert(params.end(), {w.W2, w.b2});
        const auto grads = torch::autograd::grad({loss}, params);
        EXPECT_LT(max_diff(grads[0], torch::matmul(K.transpose(1, 2), g.G1)), 1e-10) << type;
        EXPECT_LT(max_diff(grads[1], g.G1.sum(1, true)), 1e-10) << type;
        if (w.W2.defined()) {
            EXPECT_LT(max_diff(grads[2], torch::matmul(g.X2.transpose(1, 2), g.G2)), 1e-10) << type;
            EXPECT_LT(max_diff(grads[3], g.G2.sum(1, true)), 1e-10) << type;
        }
    }
}

// Theorem 1 (§1.12): f(x) = x·W + b without LN/residual, W0 = 0, batch GD over the whole context
// (b = T) and a fixed η is causal linear attention. With ct3's (= the reference's) η the weights of
// token t are W_t = −(1/t)·(η_base/d)·Σ_{s≤t} ∇ℓ_s(0), ∇ℓ_s(0) = −(k_s; 1)ᵀ v_s, so
//   z_t = (η_base / (d·t)) · Σ_{s≤t} (q_t·k_s + 1) · v_s
// i.e. linear attention with the feature map φ(x) = (x, 1) (the "+1" is the inner bias b1) and a
// per-token factor 1/t (the running mean), which the full-width post_norm that follows removes.
TEST(TTTAblation, LinearAttentionRowEqualsCausalLinearAttention) {
    const int64_t T = 12;
    ct3::TTTLayer layer = make_layer(config("linear", T, false, false, false));
    const at::Tensor x = input(2, T, 16);
    const ct3::TTTInputs in = layer->project(x, 0);
    for (TTTMode mode : {TTTMode::dual, TTTMode::primal}) {
        ct3::TTTState state;
        const at::Tensor inner = layer->ttt(in, state, mode);  // [B, H, T, d]
        const at::Tensor scores = (torch::matmul(in.XQ, in.XK.transpose(-1, -2)) + 1.0).tril();  // [B,H,T,T]
        const at::Tensor t = torch::arange(1, T + 1, torch::kFloat64).view({1, 1, T, 1});
        const at::Tensor direct = torch::matmul(scores, in.XV) * (1.0 / 8) / t;
        EXPECT_LT(max_diff(inner, direct), 1e-12) << (mode == TTTMode::dual ? "dual" : "primal");
    }
    // The whole layer: linear attention without the 1/t (Theorem 1's unnormalised sum) through the
    // same output path gives the same output up to post_norm's eps.
    const at::Tensor scores = (torch::matmul(in.XQ, in.XK.transpose(-1, -2)) + 1.0).tril();
    const at::Tensor unnormalised = torch::matmul(scores, in.XV) * (1.0 / 8);
    EXPECT_LT(max_diff(layer->forward(x), layer->output(unnormalised, x)), 1e-4);
}

TEST(TTTAblation, BatchGradientDescentOverLongContextInDualForm) {
    // b = T = 2048 ("no mini-batch") is accepted and runs in the dual form.
    ct3::TTTConfig c = config("linear", 2048, true, true, true);
    c.hidden_size = 8;
    c.num_heads = 2;
    EXPECT_NO_THROW(c.validate("test"));
    ct3::TTTLayer layer(c);
    const at::Tensor x = torch::randn({1, 2048, 8});
    const at::Tensor y = layer->forward(x, TTTMode::dual);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
    // Causal across the whole 2048-token mini-batch: later inputs leave the first outputs unchanged.
    at::Tensor x2 = x.clone();
    x2.slice(1, 1000).normal_();
    EXPECT_LT(max_diff(layer->forward(x2).slice(1, 0, 1000), y.slice(1, 0, 1000)), 1e-5);
}

TEST(TTTAblation, ZeroW0GetsNoGradientAndUnusedParametersStayRegistered) {
    ct3::TTTLayer layer = make_layer(config("linear", 4, false, false, false));
    std::vector<std::string> names;
    for (const auto & p : layer->named_parameters()) names.push_back(p.key());
    for (const char * name : {"W1", "b1", "ttt_norm_weight", "learnable_ttt_lr_weight", "learnable_token_idx"}) {
        EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
    }
    layer->forward(input(1, 6, 16)).sum().backward();
    EXPECT_FALSE(layer->W1.grad().defined());
    EXPECT_FALSE(layer->learnable_ttt_lr_weight.grad().defined());
    EXPECT_FALSE(layer->ttt_norm_weight.grad().defined());
    EXPECT_TRUE(layer->q_proj->weight.grad().defined());
}

TEST(TTTAblation, MlpWithZeroW0IsRefused) {
    try {
        config("mlp", 4, true, true, false).validate("cfg.json");
        FAIL() << "expected an error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("learnable_w0"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
}

TEST(TTTAblation, SwitchesRoundTripThroughConfigJson) {
    ct3::TTTModelConfig c = ct3::TTTModelConfig::named("125m", "linear", "llama");
    c.vocab_size = 100;
    c.mini_batch_size = 2048;
    c.inner_norm = false;
    c.learnable_lr = false;
    c.learnable_w0 = false;
    const nlohmann::json j = ct3::ttt_config_to_json(c, "float32");
    const ct3::TTTModelConfig back = ct3::ttt_config_from_json(j, "config.json");
    EXPECT_EQ(back.mini_batch_size, 2048);
    EXPECT_FALSE(back.inner_norm);
    EXPECT_FALSE(back.learnable_lr);
    EXPECT_FALSE(back.learnable_w0);
    EXPECT_FALSE(back.layer_config().inner_norm);
    // Absent fields are the reference layer; a non-boolean is refused naming the field.
    nlohmann::json plain = j;
    plain.erase("inner_norm");
    plain.erase("learnable_lr");
    plain.erase("learnable_w0");
    const ct3::TTTModelConfig dflt = ct3::ttt_config_from_json(plain, "config.json");
    EXPECT_TRUE(dflt.inner_norm && dflt.learnable_lr && dflt.learnable_w0);
    plain["learnable_lr"] = "no";
    try {
        ct3::ttt_config_from_json(plain, "config.json");
        FAIL() << "expected an error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("learnable_lr"), std::string::npos) << e.what();
    }
}

}  // namespace
