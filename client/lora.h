// LoRA (Hu et al. 2021) as PEFT implements it, injected into the named projections of a Llama-family
// model: y = base(x) + B(A(dropout(x))) * scaling, with A, B in float32 on any base dtype.
//
// The adapter's tensors are addressed by their PEFT file names
// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), so a trained adapter saves
// and loads as a PEFT adapter and caches as a plain list of named tensors. `use()` points the live
// parameters at given tensors without copying (an adapter-cache hit is O(1)); `reset()` gives the
// parameters fresh storage holding the one fixed initial state, so training never writes into a
// tensor someone else holds.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace ct3 {
class LlamaForCausalLMImpl;
}

namespace ct3::client {

// Named adapter tensors (PEFT file names), float32, on the model's device.
using AdapterTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct LoraConfig {
    int64_t r = 128;             // --lora_rank
    double alpha = 16.0;         // --lora_alpha
    double dropout = 0.1;        // --lora_dropout (training only)
    bool use_rslora = false;     // --use_rslora: scaling alpha / sqrt(r) instead of alpha / r
    // Module names (the last component, as PEFT's list form) or, when `target_regex` is set, a regex
    // that must match the full module name ("model.layers.0.self_attn.q_proj"), as PEFT's string form.
    std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj"};
    std::string target_regex;
    std::vector<int64_t> layers_to_transform;  // empty = every layer
    uint64_t seed = 0;           // the Kaiming-uniform draw of every A (the fixed initial state)

    double scaling() const;
    // Throws invalid_argument naming the flag for r < 1, alpha <= 0, dropout outside [0, 1), no targets.
    void validate() const;
};

// One adapted projection: the frozen base Linear plus lora_A [r, in] and lora_B [out, r].
class LoraLinearImpl : public torch::nn::Module {
public:
    LoraLinearImpl(torch::nn::Linear base, int64_t r, double scaling, double dropout);
    at::Tensor forward(const at::Tensor & x);

    torch::nn::Linear base_layer{nullptr};
    torch::nn::Linear lora_A{nullptr};
    torch::nn::Linear lora_B{nullptr};
    double scaling;
    double dropout;
    bool enabled = true;  // false: exactly the base layer (the LoRA path is not computed)
};
TORCH_MODULE(LoraLinear);

class LoraAdapter {
public:
    // Replaces every targeted projection of `model` by a LoraLinear (A Kaiming-uniform as PEFT, B zero),
    // freezes every base parameter and records the initial state. Throws invalid_argument when the
    // config matches no module or the model already carries LoRA layers. The adapter keeps pointers
    // into `model`: it must not outlive it.
    static std::unique_ptr<LoraAdapter> inject(LlamaForCausalLMImpl & model, const LoraConfig & config);

    const LoraConfig & config() const { return config_; }
    // Full module names of the adapted projections, in model order.
    const std::vector<std::string> & module_names() const { return module_names_; }
    // The trainable parameters (A, B of each module, model order), for the optimizer.
    std::vector<at::Tensor> parameters() const;
    int64_t num_parameters() const;

    // The live tensors under their PEFT names (no copy: later training changes them).
    AdapterTensors state() const;
    // A deep copy of state().
    AdapterTensors clone_state() const;
    // Points the parameters at `tensors` (no copy). Every name must be one of state()'s and every
    // module must be covered; shapes must match and tensors be float32 on the model's device.
    // Throws invalid_argument naming `source` and the offending tensor otherwise.
    void use(const AdapterTensors & tensors, const std::string & source);
    // Copies values of `tensors` (any float dtype/device) into fresh storage, validated as use().
    void load(const AdapterTensors & tensors, const std::string & source);
    // Fresh storage holding the fixed initial state (B = 0: the model equals the base model).
    void reset();
    const AdapterTensors & initial_state() const { return initial_; }

    // Disabled: every adapted projection computes exactly its base layer.
    void set_enabled(bool enabled);
    bool enabled() const { return enabled_; }
    // Dropout is active only in training mode.
    void set_training(bool training);

private:
    LoraAdapter() = default;
    struct Slot {
        std::string name_A, name_B;  // PEFT file names
        LoraLinearImpl * module;
    };
    void check(const AdapterTensors & tensors, const std::string & source, bool exact_storage) const;

    LoraConfig config_;
    std::vector<std::string> module_names_;
    std::vector<Slot> slots_;
    std::vector<std::shared_ptr<LoraLinearImpl>> modules_;
    AdapterTensors initial_;
    bool enabled_ = true;
};

// "base_model.model." + module + ".lora_A.weight" (the names PEFT writes to adapter_model.safetensors).
std::string peft_tensor_name(const std::string & module_name, const char * which);

}  // namespace ct3::client
