#include "models/adamw.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include <torch/torch.h>
#include <torch/version.h>

#include "models/error.h"

#define CT3_FUSED_ADAMW (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2))

namespace ct3 {

struct AdamW::Impl {
    AdamWConfig config;
    std::vector<at::Tensor> params;
    std::vector<double> weight_decay;  // per parameter
    std::vector<at::Tensor> exp_avg, exp_avg_sq;
    // float32 0-dim step counters on the parameter's device (what the fused kernel reads) and their host
    // copies (what the portable path's bias correction reads without a sync).
    std::vector<at::Tensor> steps;
    std::vector<int64_t> host_steps;
    bool fused = false;
};

AdamW::AdamW(std::vector<at::Tensor> params, AdamWConfig config)
    : AdamW(std::vector<AdamWGroup>{AdamWGroup{std::move(params), config.weight_decay}}, config) {}

AdamW::AdamW(std::vector<AdamWGroup> groups, AdamWConfig config) : impl_(std::make_unique<Impl>()) {
    impl_->config = config;
    torch::NoGradGuard no_grad;
    for (AdamWGroup & g : groups) {
        for (at::Tensor & p : g.params) {
            impl_->params.push_back(p);
            impl_->weight_decay.push_back(g.weight_decay);
            impl_->exp_avg.push_back(torch::zeros_like(p, at::MemoryFormat::Preserve));
            impl_->exp_avg_sq.push_back(torch::zeros_like(p, at::MemoryFormat::Preserve));
            impl_->steps.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
            impl_->host_steps.push_back(0);
        }
    }
#if CT3_FUSED_ADAMW
    // CT3_ADAMW_FUSED=0 selects the portable update on CUDA too (to compare the two).
    const char * env = std::getenv("CT3_ADAMW_FUSED");
    impl_->fused = !impl_->params.empty() && impl_->params.front().is_cuda() && !(env && std::string(env) == "0");
#endif
}

AdamW::~AdamW() = default;

bool AdamW::fused() const { return impl_->fused; }
void AdamW::set_lr(double lr) { impl_->config.lr = lr; }
double AdamW::lr() const { return impl_->config.lr; }

void AdamW::zero_grad() {
    for (at::Tensor & p : impl_->params) {
        if (p.grad().defined()) p.mutable_grad() = at::Tensor();
    }
}

at::Tensor AdamW::clip_and_step(double max_norm) {
    torch::NoGradGuard no_grad;
    Impl & s = *impl_;
    std::vector<size_t> live;  // parameters with a gradient this step; the others keep their state
    std::vector<at::Tensor> grads;
    for (size_t i = 0; i < s.params.size(); ++i) {
        if (!s.params[i].grad().defined()) continue;
        live.push_back(i);
        grads.push_back(s.params[i].grad());
    }
    if (grads.empty()) return at::Tensor();

    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), clamped at 1, on the device.
#if TORCH_VERSION_MAJOR >= 2
    std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
#else
    std::vector<at::Tensor> norms;
    for (const at::Tensor & g : grads) norms.push_back(g.norm(2));
#endif
    at::Tensor total = torch::stack(norms).norm(2);
    if (max_norm > 0) {
        at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
        for (at::Tensor & g : grads) g.mul_(coef);
    }

    const AdamWConfig & c = s.config;
    for (size_t i : live) ++s.host_steps[i];
#if CT3_FUSED_ADAMW
    if (s.fused) {
        // One kernel per distinct weight decay (the fused kernel takes a single scalar).
        std::map<double, std::vector<size_t>> by_decay;
        for (size_t i : live) by_decay[s.weight_decay[i]].push_back(i);
        for (const auto & [decay, idx] : by_decay) {
            std::vector<at::Tensor> p, g, m, v, st;
            for (size_t i : idx) {
                p.push_back(s.params[i]);
                g.push_back(s.params[i].grad());
                m.push_back(s.exp_avg[i]);
                v.push_back(s.exp_avg_sq[i]);
                st.push_back(s.steps[i]);
            }
            // The kernel reads the step count but does not advance it: torch.optim.AdamW adds 1 first
            // (without it the first bias correction divides by 1 - beta^0 = 0).
            at::_foreach_add_(st, 1);
            at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, st, c.lr, c.beta1, c.beta2, decay, c.eps,
                              /*amsgrad=*/false, /*maximize=*/false);
        }
        return total;
    }
#endif
    // libtorch's AdamW::step, operation for operation (so results equal torch.optim.AdamW's).
    for (size_t i : live) {
        at::Tensor & p = s.params[i];
        const at::Tensor & g = p.grad();
        if (s.weight_decay[i] != 0) p.mul_(1 - c.lr * s.weight_decay[i]);
        const double step = static_cast<double>(s.host_steps[i]);
        s.steps[i].fill_(step);
        const double bias_correction1 = 1 - std::pow(c.beta1, step);
        const double bias_correction2 = 1 - std::pow(c.beta2, step);
        s.exp_avg[i].mul_(c.beta1).add_(g, 1 - c.beta1);
        s.exp_avg_sq[i].mul_(c.beta2).addcmul_(g, g, 1 - c.beta2);
        at::Tensor denom = (s.exp_avg_sq[i].sqrt() / std::sqrt(bias_correction2)).add_(c.eps);
        p.addcdiv_(s.exp_avg[i], denom, -c.lr / bias_correction1);
    }
    return total;
}

std::map<std::string, at::Tensor> AdamW::state() const {
    std::map<std::string, at::Tensor> out;
    for (size_t i = 0; i < impl_->params.size(); ++i) {
        out["exp_avg." + std::to_string(i)] = impl_->exp_avg[i];
        out["exp_avg_sq." + std::to_string(i)] = impl_->exp_avg_sq[i];
        out["step." + std::to_string(i)] = impl_->steps[i];
    }
    return out;
}

void AdamW::load_state(const std::map<std::string, at::Tensor> & state, const std::string & source) {
    torch::NoGradGuard no_grad;
    Impl & s = *impl_;
    auto restore = [&](const std::string & name, at::Tensor & into) {
        auto it = state.find(name);
        CT3_CHECK(it != state.end(), ErrorKind::invalid_argument,
                  "{}: optimizer state '{}' is missing (checkpoint of another model?)", source, name);
        CT3_CHECK(it->second.sizes() == into.sizes(), ErrorKind::invalid_argument,
                  "{}: optimizer state '{}' has {} elements (expected {})", source, name, it->second.numel(),
                  into.numel());
        into.copy_(it->second);
    };
    for (size_t i = 0; i < s.params.size(); ++i) {
        restore("exp_avg." + std::to_string(i), s.exp_avg[i]);
        restore("exp_avg_sq." + std::to_string(i), s.exp_avg_sq[i]);
        restore("step." + std::to_string(i), s.steps[i]);
        s.host_steps[i] = static_cast<int64_t>(s.steps[i].item<float>());
    }
}

}  // namespace ct3
