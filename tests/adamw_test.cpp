// ct3::AdamW (models/adamw.h): the portable update equals libtorch's torch::optim::AdamW (itself
// torch.optim.AdamW's update), per-group weight decay, the state round trip, and on CUDA the fused
// kernel equals the portable update (a regression test: the fused path once never advanced its step
// counters, and the first bias correction divided by zero).
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/adamw.h"

namespace {

std::vector<at::Tensor> make_params(const c10::Device & device) {
    torch::manual_seed(3);
    return {torch::randn({16, 8}).to(device).requires_grad_(), torch::randn({8}).to(device).requires_grad_()};
}

// Deterministic pseudo-gradients of step `step` (the same on every device).
void set_grads(std::vector<at::Tensor> & params, int step) {
    for (size_t i = 0; i < params.size(); ++i) {
        at::Tensor g = torch::sin(torch::arange(params[i].numel(), torch::kFloat32) * 0.37 + static_cast<double>(step + static_cast<int>(i))).view_as(params[i]);
        params[i].mutable_grad() = g.to(params[i].device()) * (step % 2 == 0 ? 3.0 : 0.2);
    }
}

ct3::AdamWConfig config() {
    ct3::AdamWConfig c;
    c.lr = 1e-2;
    c.beta1 = 0.9;
    c.beta2 = 0.95;
    c.eps = 1e-8;
    c.weight_decay = 0.1;
    return c;
}

}  // namespace

TEST(AdamW, PortableUpdateEqualsLibtorchAdamW) {
    auto ours = make_params(torch::kCPU);
    auto theirs = make_params(torch::kCPU);
    ct3::AdamW opt(ours, config());
    torch::optim::AdamW ref(theirs, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
    EXPECT_FALSE(opt.fused());
    for (int step = 1; step <= 6; ++step) {
        set_grads(ours, step);
        set_grads(theirs, step);
        opt.clip_and_step(0.0);
        ref.step();
    }
    for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::allclose(ours[i], theirs[i], 1e-6, 1e-7)) << i;
}

TEST(AdamW, GroupsDecaySeparatelyAndClipReturnsTheNorm) {
    auto p = make_params(torch::kCPU);
    const at::Tensor before = p[1].detach().clone();
    ct3::AdamW opt({ct3::AdamWGroup{{p[0]}, 0.1}, ct3::AdamWGroup{{p[1]}, 0.0}}, config());
    // A zero gradient leaves Adam's step at 0, so only decoupled weight decay moves a parameter.
    p[0].mutable_grad() = torch::zeros_like(p[0]);
    p[1].mutable_grad() = torch::zeros_like(p[1]);
    const at::Tensor w0 = p[0].detach().clone();
    opt.clip_and_step(1.0);
    EXPECT_TRUE(torch::allclose(p[0], w0 * (1 - 1e-2 * 0.1)));
    EXPECT_TRUE(torch::equal(p[1], before));
    set_grads(p, 2);
    const double norm = std::sqrt(p[0].grad().pow(2).sum().item<double>() + p[1].grad().pow(2).sum().item<double>());
    EXPECT_NEAR(opt.clip_and_step(1.0).item<double>(), norm, 1e-4 * norm);
}

TEST(AdamW, StateRoundTripContinuesExactly) {
    auto a = make_params(torch::kCPU);
    auto b = make_params(torch::kCPU);
    ct3::AdamW opt_a(a, config());
    for (int step = 1; step <= 3; ++step) set_grads(a, step), opt_a.clip_and_step(1.0);
    // b: the same weights, a fresh optimizer given a's state.
    {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
    }
    ct3::AdamW opt_b(b, config());
    opt_b.load_state(opt_a.state(), "test");
    for (int step = 4; step <= 6; ++step) {
        set_grads(a, step), opt_a.clip_and_step(1.0);
        set_grads(b, step), opt_b.clip_and_step(1.0);
    }
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
    auto state = opt_a.state();
    state.erase("exp_avg.1");
    EXPECT_THROW(opt_b.load_state(state, "test"), std::exception);
}

TEST(AdamW, FusedCudaUpdateEqualsPortable) {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    auto fused_params = make_params(c10::Device(c10::kCUDA, 0));
    auto portable_params = make_params(c10::Device(c10::kCUDA, 0));
    ct3::AdamW fused(fused_params, config());
    setenv("CT3_ADAMW_FUSED", "0", 1);
    ct3::AdamW portable(portable_params, config());
    unsetenv("CT3_ADAMW_FUSED");
    EXPECT_FALSE(portable.fused());
    for (int step = 1; step <= 6; ++step) {
        set_grads(fused_params, step);
        set_grads(portable_params, step);
        fused.clip_and_step(1.0);
        portable.clip_and_step(1.0);
    }
    for (size_t i = 0; i < fused_params.size(); ++i) {
        EXPECT_TRUE(torch::isfinite(fused_params[i]).all().item<bool>()) << i;
        EXPECT_TRUE(torch::allclose(fused_params[i].cpu(), portable_params[i].cpu(), 1e-5, 1e-6)) << i;
    }
}
