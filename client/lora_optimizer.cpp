#include "client/lora_optimizer.h"

#include <torch/optim/adamw.h>
#include <torch/torch.h>
#include <torch/version.h>

#define CT3_FUSED_ADAMW (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2))

namespace ct3::client {

struct LoraAdamW::Impl {
    std::vector<at::Tensor> params;
    AdamWConfig config;
    bool fused = false;
    // Fused path: the optimizer state, as torch.optim.AdamW(fused=True) keeps it.
    std::vector<at::Tensor> exp_avg, exp_avg_sq, steps;
    // Portable path: libtorch's AdamW (the same update, one tensor at a time).
    std::unique_ptr<torch::optim::AdamW> adamw;
};

LoraAdamW::LoraAdamW(std::vector<at::Tensor> params, AdamWConfig config) : impl_(std::make_unique<Impl>()) {
    impl_->params = std::move(params);
    impl_->config = config;
#if CT3_FUSED_ADAMW
    impl_->fused = !impl_->params.empty() && impl_->params.front().is_cuda();
#endif
    if (impl_->fused) {
        torch::NoGradGuard no_grad;
        for (const at::Tensor & p : impl_->params) {
            impl_->exp_avg.push_back(torch::zeros_like(p));
            impl_->exp_avg_sq.push_back(torch::zeros_like(p));
            impl_->steps.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
        }
    } else {
        impl_->adamw = std::make_unique<torch::optim::AdamW>(
            impl_->params, torch::optim::AdamWOptions(config.lr)
                               .betas({config.beta1, config.beta2})
                               .eps(config.eps)
                               .weight_decay(config.weight_decay));
    }
}

LoraAdamW::~LoraAdamW() = default;

bool LoraAdamW::fused() const { return impl_->fused; }

void LoraAdamW::zero_grad() {
    for (at::Tensor & p : impl_->params) {
        if (p.grad().defined()) p.mutable_grad() = at::Tensor();  // set_to_none, as torch >= 2.0
    }
}

void LoraAdamW::clip_and_step(double max_norm) {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> params, grads;
    for (const at::Tensor & p : impl_->params) {
        if (!p.grad().defined()) continue;
        params.push_back(p);
        grads.push_back(p.grad());
    }
    if (grads.empty()) return;
    if (max_norm > 0) {
        // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), clamped at 1, on the device.
#if TORCH_VERSION_MAJOR >= 2
        std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
#else
        std::vector<at::Tensor> norms;
        for (const at::Tensor & g : grads) norms.push_back(g.norm(2));
#endif
        at::Tensor total = torch::stack(norms).norm(2);
        at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
        for (at::Tensor & g : grads) g.mul_(coef);
    }
    const AdamWConfig & c = impl_->config;
    if (!impl_->fused) {
        impl_->adamw->step();
        return;
    }
#if CT3_FUSED_ADAMW
    // Parameters without a gradient this step keep their state untouched, as in torch.
    std::vector<at::Tensor> m, v, steps;
    size_t j = 0;
    for (size_t i = 0; i < impl_->params.size() && j < params.size(); ++i) {
        if (!impl_->params[i].is_same(params[j])) continue;
        m.push_back(impl_->exp_avg[i]);
        v.push_back(impl_->exp_avg_sq[i]);
        steps.push_back(impl_->steps[i]);
        ++j;
    }
    at::_fused_adamw_(params, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, c.lr, c.beta1, c.beta2, c.weight_decay, c.eps,
                      /*amsgrad=*/false, /*maximize=*/false);
#endif
}

}  // namespace ct3::client
