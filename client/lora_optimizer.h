// The optimizer step of test-time training without host-device round trips: PyTorch's AdamW and
// clip_grad_norm_ semantics, but the clip factor stays a device tensor (libtorch's clip_grad_norm_
// returns the norm as a double, which synchronises the device every step) and, on CUDA with
// libtorch >= 2.2, the whole AdamW update is one fused kernel per step instead of ~9 per tensor.
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ct3::client {

struct AdamWConfig {
    double lr = 5e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class LoraAdamW {
public:
    LoraAdamW(std::vector<at::Tensor> params, AdamWConfig config);
    ~LoraAdamW();
    void zero_grad();
    // Scales the gradients so their global L2 norm is at most max_norm (no-op for max_norm <= 0),
    // then applies one AdamW update.
    void clip_and_step(double max_norm);
    bool fused() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ct3::client
