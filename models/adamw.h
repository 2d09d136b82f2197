// AdamW (decoupled weight decay, Loshchilov & Hutter) with torch.optim.AdamW's exact update and
// torch.nn.utils.clip_grad_norm_'s clipping, shared by test-time training (client) and pretraining.
//
// Why not torch::optim::AdamW: its clip_grad_norm_ returns the norm as a double (a host-device sync
// every step), it has no fused CUDA kernel, and its state is keyed by TensorImpl pointers, awkward to
// checkpoint. Here the clip factor stays a device tensor, CUDA with libtorch >= 2.2 runs the whole
// update as one fused kernel (torch.optim.AdamW(fused=True)), and the state is plain named tensors.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ct3 {

struct AdamWConfig {
    double lr = 5e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

// Parameters sharing one weight decay (pretraining exempts norms and biases from decay).
struct AdamWGroup {
    std::vector<at::Tensor> params;
    double weight_decay = 0.0;
};

class AdamW {
public:
    // One group, decayed by config.weight_decay.
    AdamW(std::vector<at::Tensor> params, AdamWConfig config);
    // Several groups; config.weight_decay is ignored in favour of each group's.
    AdamW(std::vector<AdamWGroup> groups, AdamWConfig config);
    ~AdamW();

    void set_lr(double lr);
    double lr() const;
    void zero_grad();  // set_to_none, as torch >= 2.0
    // Scales the gradients so their global L2 norm is at most max_norm (no clipping for max_norm <= 0),
    // then applies one AdamW update. Returns the global norm before clipping as a 0-dim device tensor
    // (undefined when no parameter has a gradient); reading it synchronises, so callers log it rarely.
    at::Tensor clip_and_step(double max_norm);
    bool fused() const;

    // The optimizer state as named tensors ("exp_avg.<i>", "exp_avg_sq.<i>", "step.<i>" with i the
    // parameter's index over all groups), for checkpoints; load_state() restores it exactly and throws
    // invalid_argument naming `source` and the tensor when a name is missing or a shape differs.
    std::map<std::string, at::Tensor> state() const;
    void load_state(const std::map<std::string, at::Tensor> & state, const std::string & source);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ct3
