#include "models/llama_loader.h"

#include <set>

#include "models/error.h"
#include "models/log.h"
#include "models/safetensors.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

bool ends_with(const std::string & s, const std::string & suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float_dtype(const std::string & dtype) {
    return dtype == "F32" || dtype == "F16" || dtype == "BF16" || dtype == "F64";
}

}  // namespace

c10::ScalarType llama_dtype_from_name(const std::string & name, const std::string & source) {
    if (name == "float32" || name == "fp32" || name == "float") return torch::kFloat32;
    if (name == "float16" || name == "fp16" || name == "half") return torch::kFloat16;
    if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
    fail(ErrorKind::invalid_argument, "{}: unknown dtype '{}' (expected float32, float16 or bfloat16)", source, name);
}

LlamaForCausalLM load_llama(const fs::path & folder, const LlamaLoadOptions & options) {
    CT3_CHECK(options.dtype == torch::kFloat32 || options.dtype == torch::kFloat16 ||
                  options.dtype == torch::kBFloat16,
              ErrorKind::invalid_argument, "load_llama({}): dtype {} is not one of float32, float16, bfloat16",
              folder.string(), c10::toString(options.dtype));
    const LlamaConfig config = LlamaConfig::from_file(folder);
    Checkpoint checkpoint = Checkpoint::open(folder);
    const std::string source = checkpoint.path().string();

    LlamaForCausalLM model(config, /*init_weights=*/false);
    model->to(options.device, options.dtype);

    std::set<std::string> expected;
    for (const auto & p : model->named_parameters(/*recurse=*/true)) {
        const std::string & name = p.key();
        expected.insert(name);
        if (!checkpoint.contains(name)) {
            fail_hint(ErrorKind::not_found, "is the folder a " + config.architecture + " checkpoint of this config?",
                      "{}: tensor '{}' is missing", source, name);
        }
        const TensorInfo & info = checkpoint.info(name);
        CT3_CHECK(is_float_dtype(info.dtype), ErrorKind::unsupported,
                  "{}: tensor '{}' has dtype {} (expected F32, F16 or BF16)", source, name, info.dtype);
        CT3_CHECK(info.shape == p.value().sizes().vec(), ErrorKind::invalid_argument,
                  "{}: tensor '{}' has shape [{}] (expected [{}] from {}/config.json)", source, name,
                  fmt::join(info.shape, ", "), fmt::join(p.value().sizes(), ", "), folder.string());
        model->load_parameter(name, checkpoint.load(name), source);
    }
    std::vector<std::string> unexpected;
    for (const auto & name : checkpoint.names()) {
        if (expected.count(name) != 0 || ends_with(name, "rotary_emb.inv_freq")) continue;
        if (config.tie_word_embeddings && name == "lm_head.weight") continue;
        unexpected.push_back(name);
    }
    if (!unexpected.empty()) {
        if (unexpected.size() > 5) unexpected.resize(5);
        fail_hint(ErrorKind::bad_format, "the checkpoint does not match config.json's architecture",
                  "{}: unexpected tensors for {}: {}", source, config.architecture, fmt::join(unexpected, ", "));
    }
    model->eval();
    logger("model")->info("loaded {} from {}: {} layers, hidden {}, vocab {}, {} on {}", config.architecture,
                          folder.string(), config.num_hidden_layers, config.hidden_size, config.vocab_size,
                          c10::toString(options.dtype), options.device.str());
    return model;
}

}  // namespace ct3
