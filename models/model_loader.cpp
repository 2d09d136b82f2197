#include "models/model_loader.h"

#include <torch/torch.h>

#include "models/error.h"
#include "models/llama2c.h"
#include "models/llama_config.h"
#include "models/llama_loader.h"
#include "models/log.h"
#include "models/ttt_loader.h"

namespace fs = std::filesystem;

namespace ct3 {

static c10::Device parse_device(const std::string & name) {
    try {
        c10::Device device(name);
        if (device.is_cuda() && !torch::cuda::is_available()) {
            fail_hint(ErrorKind::unavailable, "use --device cpu, or a build of ct3 against CUDA libtorch",
                      "device '{}' requested but CUDA is not available in this build/machine", name);
        }
        return device;
    } catch (const c10::Error &) {
        fail(ErrorKind::invalid_argument, "device '{}' is not a device name (expected cpu, cuda or cuda:N)", name);
    }
}

// "auto": float32 on CPU (the reference precision); on CUDA the checkpoint's own half type, else bf16.
static c10::ScalarType pick_dtype(const std::string & requested, const std::string & checkpoint_dtype,
                                  const c10::Device & device) {
    if (requested != "auto") return llama_dtype_from_name(requested, "--dtype");
    if (device.is_cpu()) return c10::ScalarType::Float;
    if (checkpoint_dtype == "float16") return c10::ScalarType::Half;
    return c10::ScalarType::BFloat16;
}

std::shared_ptr<CausalLM> load_causal_lm(const fs::path & path, const LoadOptions & options) {
    CT3_CHECK(fs::exists(path), ErrorKind::not_found,
              "model '{}' does not exist (expected a Hugging Face model folder or a llama2.c .bin file)", path.string());
    const c10::Device device = parse_device(options.device);
    auto log = logger("model");

    if (fs::is_regular_file(path) && path.extension() == ".bin") {
        LlamaForCausalLM model = load_llama2c(path);
        const c10::ScalarType dtype = pick_dtype(options.dtype, "float32", device);
        model->to(device, dtype);
        model->eval();
        log->info("loaded llama2.c checkpoint {} ({} layers, dim {}) on {} as {}", path.string(),
                  model->config().num_hidden_layers, model->config().hidden_size, device.str(), c10::toString(dtype));
        return model.ptr();
    }
    const fs::path folder = fs::is_directory(path) ? path : path.parent_path();
    CT3_CHECK(fs::exists(folder / "config.json"), ErrorKind::not_found,
              "'{}' has no config.json (expected a Hugging Face model folder or a llama2.c .bin file)", folder.string());
    if (is_ttt_model_folder(folder)) {
        // TTT models keep their inner loop in float32 whatever the dtype; "auto" follows the Llama rule.
        const c10::ScalarType dtype = pick_dtype(options.dtype, "float32", device);
        TTTForCausalLM model = load_ttt(folder, device, dtype);
        log->info("loaded TTT-{} ({} backbone) from {} ({} layers, hidden {}) on {} as {}",
                  model->config().ttt_layer_type == "mlp" ? "MLP" : "Linear", model->config().backbone,
                  folder.string(), model->config().num_hidden_layers, model->config().hidden_size, device.str(),
                  c10::toString(dtype));
        return model.ptr();
    }
    const LlamaConfig config = LlamaConfig::from_file(folder);
    LlamaLoadOptions load_options;
    load_options.device = device;
    load_options.dtype = pick_dtype(options.dtype, config.dtype, device);
    LlamaForCausalLM model = load_llama(folder, load_options);
    model->eval();
    log->info("loaded {} from {} ({} layers, hidden {}) on {} as {}", config.architecture, folder.string(),
              config.num_hidden_layers, config.hidden_size, device.str(), c10::toString(load_options.dtype));
    return model.ptr();
}

}  // namespace ct3
