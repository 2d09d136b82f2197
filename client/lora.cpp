#include "client/lora.h"

#include <cmath>
#include <regex>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/dropout.h>

#include "models/error.h"
#include "models/llama.h"

namespace F = torch::nn::functional;

namespace ct3::client {

double LoraConfig::scaling() const { return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }

void LoraConfig::validate() const {
    CT3_CHECK(r >= 1, ErrorKind::invalid_argument, "--lora_rank must be >= 1 (got {})", r);
    CT3_CHECK(alpha > 0 && std::isfinite(alpha), ErrorKind::invalid_argument, "--lora_alpha must be > 0 (got {})",
              alpha);
    CT3_CHECK(dropout >= 0 && dropout < 1, ErrorKind::invalid_argument, "--lora_dropout must be in [0, 1) (got {})",
              dropout);
    CT3_CHECK(!target_modules.empty() || !target_regex.empty(), ErrorKind::invalid_argument,
              "--target_modules must name at least one module");
}

std::string peft_tensor_name(const std::string & module_name, const char * which) {
    return "base_model.model." + module_name + "." + which + ".weight";
}

//
// LoraLinear
//

LoraLinearImpl::LoraLinearImpl(torch::nn::Linear base, int64_t r, double scaling_, double dropout_)
    : scaling(scaling_), dropout(dropout_) {
    const at::Tensor & w = base->weight;
    const int64_t in = w.size(1), out = w.size(0);
    auto options = torch::TensorOptions().dtype(torch::kFloat32).device(w.device());
    base_layer = register_module("base_layer", base);
    lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in, r).bias(false)));
    lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(r, out).bias(false)));
    torch::NoGradGuard no_grad;
    lora_A->weight.set_data(torch::zeros({r, in}, options));
    lora_B->weight.set_data(torch::zeros({out, r}, options));
}

at::Tensor LoraLinearImpl::forward(const at::Tensor & x) {
    at::Tensor result = base_layer->forward(x);
    if (!enabled) return result;
    // PEFT: the input is cast to the adapter dtype, the delta added in float32, the sum cast back.
    at::Tensor h = x.to(torch::kFloat32);
    if (is_training() && dropout > 0) h = F::dropout(h, F::DropoutFuncOptions().p(dropout).training(true));
    at::Tensor delta = lora_B->forward(lora_A->forward(h)) * scaling;
    return (result + delta).to(result.scalar_type());
}

//
// LoraAdapter
//

namespace {

bool is_target(const LoraConfig & config, const std::string & full_name, const std::string & short_name,
               int64_t layer) {
    if (!config.layers_to_transform.empty()) {
        bool listed = false;
        for (int64_t l : config.layers_to_transform) listed = listed || l == layer;
        if (!listed) return false;
    }
    if (!config.target_regex.empty()) return std::regex_match(full_name, std::regex(config.target_regex));
    for (const std::string & t : config.target_modules) {
        // PEFT's list form: the whole name or a suffix after a dot ("q_proj", "self_attn.q_proj").
        if (t == short_name || t == full_name) return true;
        if (full_name.size() > t.size() && full_name.compare(full_name.size() - t.size(), t.size(), t) == 0 &&
            full_name[full_name.size() - t.size() - 1] == '.') {
            return true;
        }
    }
    return false;
}

std::string shape_str(const at::Tensor & t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

}  // namespace

std::unique_ptr<LoraAdapter> LoraAdapter::inject(LlamaForCausalLMImpl & model, const LoraConfig & config) {
    config.validate();
    std::unique_ptr<LoraAdapter> adapter(new LoraAdapter());
    adapter->config_ = config;
    torch::NoGradGuard no_grad;
    for (auto & p : model.parameters()) p.set_requires_grad(false);

    // One generator for every A, drawn in model order: the initial state depends only on the seed.
    at::Generator gen = at::detail::createCPUGenerator(config.seed);
    const int64_t n_layers = model.config().num_hidden_layers;
    for (int64_t i = 0; i < n_layers; ++i) {
        LlamaDecoderLayerImpl & layer = model.layer(i);
        std::pair<const char *, ProjectionsImpl *> blocks[] = {{"self_attn", layer.self_attn.get()},
                                                               {"mlp", layer.mlp.get()}};
        for (auto & [block_name, block] : blocks) {
            for (const std::string & name : block->projection_names()) {
                const std::string full = fmt::format("model.layers.{}.{}.{}", i, block_name, name);
                if (!is_target(config, full, name, i)) continue;
                auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(block->projection(name).ptr());
                CT3_CHECK(linear != nullptr, ErrorKind::invalid_argument,
                          "{} already carries a LoRA layer: inject one adapter per model", full);
                LoraLinear lora(torch::nn::Linear(linear), config.r, config.scaling(), config.dropout);
                // PEFT init_lora_weights=True: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0.
                const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
                at::Tensor a = torch::empty(lora->lora_A->weight.sizes(), torch::kFloat32);
                a.uniform_(-bound, bound, gen);
                lora->lora_A->weight.copy_(a);
                lora->lora_A->weight.set_requires_grad(true);
                lora->lora_B->weight.set_requires_grad(true);
                lora->train(false);
                block->replace_projection(name, torch::nn::AnyModule(lora));
                adapter->module_names_.push_back(full);
                adapter->slots_.push_back({peft_tensor_name(full, "lora_A"), peft_tensor_name(full, "lora_B"),
                                           lora.get()});
                adapter->modules_.push_back(lora.ptr());
            }
        }
    }
    CT3_CHECK(!adapter->slots_.empty(), ErrorKind::invalid_argument,
              "--target_modules ({}) matches no projection of the model (it has q_proj k_proj v_proj o_proj "
              "gate_proj up_proj down_proj in each layer)",
              config.target_regex.empty() ? fmt::format("{}", fmt::join(config.target_modules, " "))
                                          : config.target_regex);
    adapter->initial_ = adapter->clone_state();
    return adapter;
}

std::vector<at::Tensor> LoraAdapter::parameters() const {
    std::vector<at::Tensor> out;
    out.reserve(slots_.size() * 2);
    for (const Slot & s : slots_) {
        out.push_back(s.module->lora_A->weight);
        out.push_back(s.module->lora_B->weight);
    }
    return out;
}

int64_t LoraAdapter::num_parameters() const {
    int64_t n = 0;
    for (const at::Tensor & p : parameters()) n += p.numel();
    return n;
}

AdapterTensors LoraAdapter::state() const {
    // detach(): a new tensor object on the same storage, so a later set_data() on the parameter (use,
    // reset) re-points the parameter without changing what the caller holds.
    AdapterTensors out;
    out.reserve(slots_.size() * 2);
    for (const Slot & s : slots_) {
        out.emplace_back(s.name_A, s.module->lora_A->weight.detach());
        out.emplace_back(s.name_B, s.module->lora_B->weight.detach());
    }
    return out;
}

AdapterTensors LoraAdapter::clone_state() const {
    torch::NoGradGuard no_grad;
    AdapterTensors out = state();
    for (auto & [name, t] : out) t = t.clone();
    return out;
}

void LoraAdapter::check(const AdapterTensors & tensors, const std::string & source, bool exact_storage) const {
    std::map<std::string, const at::Tensor *> by_name;
    for (const auto & [name, t] : tensors) {
        CT3_CHECK(by_name.emplace(name, &t).second, ErrorKind::invalid_argument, "{}: tensor '{}' appears twice",
                  source, name);
    }
    std::set<std::string> expected;
    for (const Slot & s : slots_) {
        for (const auto & [name, param] : {std::make_pair(s.name_A, &s.module->lora_A->weight),
                                           std::make_pair(s.name_B, &s.module->lora_B->weight)}) {
            expected.insert(name);
            auto it = by_name.find(name);
            CT3_CHECK(it != by_name.end(), ErrorKind::invalid_argument,
                      "{}: no tensor '{}' for the adapted module (the adapter was made for other target modules?)",
                      source, name);
            const at::Tensor & t = *it->second;
            CT3_CHECK(t.defined() && t.sizes() == param->sizes(), ErrorKind::invalid_argument,
                      "{}: tensor '{}' has shape {} (expected {}: rank {})", source, name,
                      t.defined() ? shape_str(t) : "undefined", shape_str(*param), config_.r);
            CT3_CHECK(t.is_floating_point(), ErrorKind::invalid_argument, "{}: tensor '{}' has dtype {} (expected float)",
                      source, name, c10::toString(t.scalar_type()));
            if (exact_storage) {
                CT3_CHECK(t.scalar_type() == torch::kFloat32 && t.device() == param->device(),
                          ErrorKind::invalid_argument, "{}: tensor '{}' must be float32 on {} (got {} on {})", source,
                          name, param->device().str(), c10::toString(t.scalar_type()), t.device().str());
            }
        }
    }
    for (const auto & [name, t] : by_name) {
        CT3_CHECK(expected.count(name) != 0, ErrorKind::invalid_argument,
                  "{}: tensor '{}' matches no adapted module of the model", source, name);
    }
}

void LoraAdapter::use(const AdapterTensors & tensors, const std::string & source) {
    check(tensors, source, /*exact_storage=*/true);
    std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
    torch::NoGradGuard no_grad;
    for (const Slot & s : slots_) {
        s.module->lora_A->weight.set_data(by_name.at(s.name_A));
        s.module->lora_B->weight.set_data(by_name.at(s.name_B));
    }
}

void LoraAdapter::load(const AdapterTensors & tensors, const std::string & source) {
    check(tensors, source, /*exact_storage=*/false);
    const c10::Device device = slots_.front().module->lora_A->weight.device();
    AdapterTensors fresh;
    fresh.reserve(tensors.size());
    torch::NoGradGuard no_grad;
    for (const auto & [name, t] : tensors) {
        fresh.emplace_back(name, t.to(device, torch::kFloat32, /*non_blocking=*/false, /*copy=*/true).contiguous());
    }
    use(fresh, source);
}

void LoraAdapter::reset() {
    torch::NoGradGuard no_grad;
    AdapterTensors fresh = initial_;
    for (auto & [name, t] : fresh) t = t.clone();
    use(fresh, "the initial LoRA state");
}

void LoraAdapter::set_enabled(bool enabled) {
    enabled_ = enabled;
    for (const Slot & s : slots_) s.module->enabled = enabled;
}

void LoraAdapter::set_training(bool training) {
    for (const Slot & s : slots_) s.module->train(training);
}

}  // namespace ct3::client
