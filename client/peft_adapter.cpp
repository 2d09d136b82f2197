#include "client/peft_adapter.h"

#include <cmath>

#include "kb/kb_files.h"
#include "models/error.h"
#include "models/safetensors.h"
#include "models/strict_json.h"

namespace fs = std::filesystem;

namespace ct3::client {

namespace {

constexpr const char * kConfigFile = "adapter_config.json";
constexpr const char * kWeightsFile = "adapter_model.safetensors";

bool is_null_or_empty(const nlohmann::json & v) {
    return v.is_null() || ((v.is_object() || v.is_array() || v.is_string()) && v.empty());
}

}  // namespace

nlohmann::json peft_adapter_config(const LoraConfig & config, const std::string & base_model_name_or_path) {
    nlohmann::json j;
    j["peft_type"] = "LORA";
    j["task_type"] = "CAUSAL_LM";
    j["base_model_name_or_path"] = base_model_name_or_path;
    j["r"] = config.r;
    j["lora_alpha"] = config.alpha;
    j["lora_dropout"] = config.dropout;
    j["use_rslora"] = config.use_rslora;
    if (config.target_regex.empty()) {
        j["target_modules"] = config.target_modules;
    } else {
        j["target_modules"] = config.target_regex;
    }
    j["layers_to_transform"] = config.layers_to_transform.empty() ? nlohmann::json(nullptr)
                                                                  : nlohmann::json(config.layers_to_transform);
    j["bias"] = "none";
    j["fan_in_fan_out"] = false;
    j["init_lora_weights"] = true;
    j["inference_mode"] = true;
    j["modules_to_save"] = nullptr;
    j["rank_pattern"] = nlohmann::json::object();
    j["alpha_pattern"] = nlohmann::json::object();
    j["use_dora"] = false;
    j["revision"] = nullptr;
    return j;
}

LoraConfig read_peft_adapter_config(const fs::path & adapter_dir) {
    const fs::path file = adapter_dir / kConfigFile;
    CT3_CHECK(fs::is_regular_file(file), ErrorKind::not_found,
              "{} not found: an adapter folder holds adapter_config.json and adapter_model.safetensors",
              file.string());
    const nlohmann::json j = parse_strict_json(kb::read_whole_file(file, "adapter config"), file.string());
    const std::string src = file.string();
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "{}: expected a JSON object", src);
    auto field = [&](const char * name) -> const nlohmann::json & {
        static const nlohmann::json null_value;
        auto it = j.find(name);
        return it == j.end() ? null_value : *it;
    };
    const std::string peft_type = field("peft_type").is_string() ? field("peft_type").get<std::string>() : "";
    CT3_CHECK(peft_type == "LORA", ErrorKind::unsupported, "{}: peft_type is '{}' (ct3 loads LORA adapters only)", src,
              peft_type);

    LoraConfig config;
    CT3_CHECK(field("r").is_number_integer(), ErrorKind::bad_format, "{}: r must be an integer", src);
    config.r = field("r").get<int64_t>();
    CT3_CHECK(field("lora_alpha").is_number(), ErrorKind::bad_format, "{}: lora_alpha must be a number", src);
    config.alpha = field("lora_alpha").get<double>();
    config.dropout = field("lora_dropout").is_number() ? field("lora_dropout").get<double>() : 0.0;
    config.use_rslora = field("use_rslora").is_boolean() && field("use_rslora").get<bool>();

    const nlohmann::json & targets = field("target_modules");
    if (targets.is_string()) {
        CT3_CHECK(targets.get<std::string>() != "all-linear", ErrorKind::unsupported,
                  "{}: target_modules 'all-linear' is not supported; list the module names", src);
        config.target_regex = targets.get<std::string>();
    } else {
        CT3_CHECK(targets.is_array() && !targets.empty(), ErrorKind::bad_format,
                  "{}: target_modules must be a non-empty list of module names or a regex string", src);
        config.target_modules.clear();
        for (const auto & t : targets) {
            CT3_CHECK(t.is_string(), ErrorKind::bad_format, "{}: target_modules must hold strings", src);
            config.target_modules.push_back(t.get<std::string>());
        }
    }
    const nlohmann::json & layers = field("layers_to_transform");
    if (layers.is_number_integer()) {
        config.layers_to_transform = {layers.get<int64_t>()};
    } else if (layers.is_array()) {
        for (const auto & l : layers) {
            CT3_CHECK(l.is_number_integer(), ErrorKind::bad_format, "{}: layers_to_transform must hold integers", src);
            config.layers_to_transform.push_back(l.get<int64_t>());
        }
    } else {
        CT3_CHECK(layers.is_null(), ErrorKind::bad_format, "{}: layers_to_transform must be an integer or a list", src);
    }

    // Fields whose non-default values change the math: refuse rather than compute something else.
    const std::string bias = field("bias").is_string() ? field("bias").get<std::string>() : "none";
    CT3_CHECK(bias == "none", ErrorKind::unsupported, "{}: bias '{}' is not supported (only 'none')", src, bias);
    CT3_CHECK(!(field("use_dora").is_boolean() && field("use_dora").get<bool>()), ErrorKind::unsupported,
              "{}: use_dora is not supported", src);
    CT3_CHECK(!(field("fan_in_fan_out").is_boolean() && field("fan_in_fan_out").get<bool>()), ErrorKind::unsupported,
              "{}: fan_in_fan_out is not supported (Llama projections are nn.Linear)", src);
    CT3_CHECK(!(field("lora_bias").is_boolean() && field("lora_bias").get<bool>()), ErrorKind::unsupported,
              "{}: lora_bias is not supported", src);
    for (const char * name : {"rank_pattern", "alpha_pattern", "modules_to_save", "layers_pattern", "exclude_modules",
                              "target_parameters", "trainable_token_indices", "layer_replication"}) {
        CT3_CHECK(is_null_or_empty(field(name)), ErrorKind::unsupported, "{}: {} is not supported (must be empty)", src,
                  name);
    }
    try {
        config.validate();
    } catch (const Error & e) {
        fail(ErrorKind::bad_format, "{}: {}", src, e.what());
    }
    return config;
}

AdapterTensors read_peft_tensors(const fs::path & adapter_dir) {
    const fs::path file = adapter_dir / kWeightsFile;
    if (!fs::exists(file) && fs::exists(adapter_dir / "adapter_model.bin")) {
        fail_hint(ErrorKind::unsupported, "convert it with peft: model.save_pretrained(dir, safe_serialization=True)",
                  "{}: pickled adapter_model.bin is not read (it can run code); ct3 reads adapter_model.safetensors",
                  adapter_dir.string());
    }
    auto st = SafetensorsFile::open(file);
    AdapterTensors out;
    for (const TensorInfo & info : st->tensors()) out.emplace_back(info.name, st->load(info.name));
    return out;
}

void save_peft_adapter(const fs::path & dir, const LoraAdapter & adapter, const std::string & base_model_name_or_path) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    CT3_CHECK(!ec, ErrorKind::io, "cannot create adapter folder {}: {}", dir.string(), ec.message());
    // Each file is replaced atomically; the config goes last, so a folder with a config always has
    // complete weights next to it.
    save_safetensors(dir / kWeightsFile, adapter.state());
    kb::write_file_atomic(dir / kConfigFile, peft_adapter_config(adapter.config(), base_model_name_or_path).dump(2));
}

std::unique_ptr<LoraAdapter> load_peft_adapter(LlamaForCausalLMImpl & model, const fs::path & adapter_dir) {
    LoraConfig config = read_peft_adapter_config(adapter_dir);
    AdapterTensors tensors = read_peft_tensors(adapter_dir);
    // Names are checked before the model is touched; a shape or coverage mismatch is only found after
    // inject() (the model then carries LoRA layers: reload it).
    for (const auto & [name, t] : tensors) {
        const bool lora = name.rfind("base_model.model.", 0) == 0 &&
                          (name.find(".lora_A.weight") != std::string::npos ||
                           name.find(".lora_B.weight") != std::string::npos);
        CT3_CHECK(lora, ErrorKind::bad_format,
                  "{}: tensor '{}' is not a LoRA tensor (expected base_model.model.<module>.lora_A/B.weight)",
                  (adapter_dir / kWeightsFile).string(), name);
    }
    std::unique_ptr<LoraAdapter> adapter = LoraAdapter::inject(model, config);
    adapter->load(tensors, (adapter_dir / kWeightsFile).string());
    return adapter;
}

}  // namespace ct3::client
