#include "models/ttt_loader.h"

#include <cmath>
#include <limits>
#include <set>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/config_fields.h"
#include "models/error.h"
#include "models/file_io.h"
#include "models/log.h"
#include "models/safetensors.h"
#include "models/strict_json.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3 {

namespace {

using namespace config_fields;

const json & required(const json & j, const char * key, const std::string & source) {
    CT3_CHECK(has(j, key), ErrorKind::invalid_argument, "{}: field '{}' is missing (a TTT config needs it)", source,
              key);
    return j.at(key);
}

int64_t get_positive(const json & j, const char * key, int64_t fallback, const std::string & source,
                     bool is_required = false) {
    const int64_t v = is_required ? as_int(required(j, key, source), key, source)
                                  : get_int(j, key, fallback, source);
    CT3_CHECK(v > 0, ErrorKind::invalid_argument, "{}: field '{}' must be > 0 (got {})", source, key, v);
    return v;
}

double get_positive_double(const json & j, const char * key, double fallback, const std::string & source) {
    if (!has(j, key)) return fallback;
    const json & v = j.at(key);
    CT3_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0, ErrorKind::invalid_argument,
              "{}: field '{}' must be a finite number > 0 (got {})", source, key, v.dump());
    return v.get<double>();
}

int32_t token_id(const json & v, const char * key, int64_t vocab, const std::string & source) {
    CT3_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab, ErrorKind::invalid_argument,
              "{}: field '{}' must be a token id in [0, vocab_size {}) (got {})", source, key, vocab, v.dump());
    return static_cast<int32_t>(v.get<int64_t>());
}

json read_json_file(const fs::path & file) {
    return parse_strict_json(read_whole_file(file, "model config"), file.string());
}

// The tensor name in model.safetensors of a module parameter (ttt.py's TTTForCausalLM layout).
std::string file_name_of(const std::string & param) {
    if (param.rfind("lm_head.", 0) == 0) return param;
    // ttt.py nests the mamba pre-conv as `conv` = {norm, conv}; ct3's block holds the two directly.
    std::string name = param;
    for (const auto & [ours, theirs] : {std::pair<std::string, std::string>{".pre_conv_norm.", ".conv.norm."},
                                        std::pair<std::string, std::string>{".pre_conv.", ".conv.conv."}}) {
        const size_t at = name.find(ours);
        if (at != std::string::npos) name.replace(at, ours.size(), theirs);
    }
    return "model." + name;
}

}  // namespace

bool is_ttt_model_folder(const fs::path & folder) {
    const fs::path file = folder / "config.json";
    if (!fs::is_regular_file(file)) return false;
    const json j = read_json_file(file);
    return j.is_object() && j.contains("model_type") && j.at("model_type") == "ttt";
}

TTTModelConfig ttt_config_from_json(const json & j, const std::string & source) {
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "{}: expected a JSON object", source);
    CT3_CHECK(has(j, "model_type") && j.at("model_type") == "ttt", ErrorKind::invalid_argument,
              "{}: field 'model_type' must be \"ttt\" (got {})", source,
              j.contains("model_type") ? j.at("model_type").dump() : "nothing");
    TTTModelConfig c;
    c.vocab_size = get_positive(j, "vocab_size", 0, source, true);
    c.hidden_size = get_positive(j, "hidden_size", 0, source, true);
    c.num_hidden_layers = get_positive(j, "num_hidden_layers", 0, source, true);
    c.num_attention_heads = get_positive(j, "num_attention_heads", 0, source, true);
    c.intermediate_size = get_positive(j, "intermediate_size", 0, source, true);
    CT3_CHECK(c.hidden_size % c.num_attention_heads == 0 && (c.hidden_size / c.num_attention_heads) % 2 == 0,
              ErrorKind::invalid_argument,
              "{}: field 'num_attention_heads' must divide 'hidden_size' {} into an even head_dim (got {})", source,
              c.hidden_size, c.num_attention_heads);
    c.mini_batch_size = get_positive(j, "mini_batch_size", 16, source);
    c.conv_width = get_positive(j, "conv_kernel", 4, source);
    c.max_position_embeddings = get_positive(j, "max_position_embeddings", 2048, source);
    if (has(j, "ttt_layer_type")) {
        const json & t = j.at("ttt_layer_type");
        CT3_CHECK(t == "linear" || t == "mlp", ErrorKind::invalid_argument,
                  "{}: field 'ttt_layer_type' must be \"linear\" or \"mlp\" (got {})", source, t.dump());
        c.ttt_layer_type = t.get<std::string>();
    }
    c.ttt_base_lr = get_positive_double(j, "ttt_base_lr", 1.0, source);
    c.rms_norm_eps = get_positive_double(j, "rms_norm_eps", 1e-6, source);
    c.rope_theta = get_positive_double(j, "rope_theta", 10000.0, source);
    c.initializer_range = get_positive_double(j, "initializer_range", 0.02, source);
    const bool pre_conv = get_bool(j, "pre_conv", false, source);
    const bool share_qk = get_bool(j, "share_qk", false, source);
    const bool use_gate = get_bool(j, "use_gate", false, source);
    CT3_CHECK(pre_conv == share_qk && share_qk == use_gate, ErrorKind::unsupported,
              "{}: fields 'pre_conv', 'share_qk' and 'use_gate' must be all true (mamba backbone) or all false "
              "(llama backbone) (got {}, {}, {})",
              source, pre_conv, share_qk, use_gate);
    c.backbone = pre_conv ? "mamba" : "llama";
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", true, source);
    // ct3's ablation switches (absent from ttt.py's configs: the defaults are its layer).
    c.inner_norm = get_bool(j, "inner_norm", true, source);
    c.learnable_lr = get_bool(j, "learnable_lr", true, source);
    c.learnable_w0 = get_bool(j, "learnable_w0", true, source);
    c.bos_token_id = has(j, "bos_token_id")       ? token_id(j.at("bos_token_id"), "bos_token_id", c.vocab_size, source)
                     : j.contains("bos_token_id") ? -1  // explicit null: no BOS
                                                  : 1;  // ttt.py default
    c.eos_token_ids.clear();
    if (has(j, "eos_token_id")) {
        const json & e = j.at("eos_token_id");
        if (e.is_array()) {
            for (const json & id : e) c.eos_token_ids.push_back(token_id(id, "eos_token_id", c.vocab_size, source));
        } else {
            c.eos_token_ids.push_back(token_id(e, "eos_token_id", c.vocab_size, source));
        }
    } else if (!j.contains("eos_token_id")) {
        c.eos_token_ids.push_back(2);  // ttt.py default
    }
    c.validate(source);
    return c;
}

json ttt_config_to_json(const TTTModelConfig & c, const std::string & dtype) {
    const bool mamba = c.backbone == "mamba";
    json j = {{"architectures", {"TTTForCausalLM"}},
              {"model_type", "ttt"},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_hidden_layers", c.num_hidden_layers},
              {"num_attention_heads", c.num_attention_heads},
              {"mini_batch_size", c.mini_batch_size},
              {"ttt_layer_type", c.ttt_layer_type},
              {"ttt_base_lr", c.ttt_base_lr},
              {"pre_conv", mamba},
              {"share_qk", mamba},
              {"use_gate", mamba},
              {"conv_kernel", c.conv_width},
              {"rms_norm_eps", c.rms_norm_eps},
              {"rope_theta", c.rope_theta},
              {"initializer_range", c.initializer_range},
              {"max_position_embeddings", c.max_position_embeddings},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"inner_norm", c.inner_norm},
              {"learnable_lr", c.learnable_lr},
              {"learnable_w0", c.learnable_w0},
              {"use_cache", true},
              {"torch_dtype", dtype}};
    j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
    if (c.eos_token_ids.size() == 1) {
        j["eos_token_id"] = c.eos_token_ids.front();
    } else if (c.eos_token_ids.empty()) {
        j["eos_token_id"] = nullptr;
    } else {
        j["eos_token_id"] = c.eos_token_ids;
    }
    return j;
}

void save_ttt_model(TTTForCausalLMImpl & model, const fs::path & folder, c10::ScalarType dtype) {
    CT3_CHECK(dtype == c10::ScalarType::Float || dtype == c10::ScalarType::BFloat16, ErrorKind::invalid_argument,
              "save_ttt_model: dtype must be float32 or bfloat16 (got {})", c10::toString(dtype));
    fs::create_directories(folder);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto & p : model.named_parameters(/*recurse=*/true)) {
        tensors.emplace_back(file_name_of(p.key()), p.value().detach().to(torch::kCPU, dtype));
    }
    save_safetensors(folder / "model.safetensors", tensors);
    const std::string dtype_name = dtype == c10::ScalarType::Float ? "float32" : "bfloat16";
    write_file_atomic(folder / "config.json", ttt_config_to_json(model.config(), dtype_name).dump(2) + "\n");
    logger("model")->info("saved TTT model ({} tensors, {}) to {}", tensors.size(), dtype_name, folder.string());
}

TTTForCausalLM load_ttt(const fs::path & folder, c10::Device device, c10::ScalarType dtype) {
    const fs::path config_file = folder / "config.json";
    const TTTModelConfig config = ttt_config_from_json(read_json_file(config_file), config_file.string());
    const Checkpoint checkpoint = Checkpoint::open(folder);
    // Errors name the weights file (a sharded checkpoint is named by its folder).
    const std::string source = fs::is_regular_file(folder / "model.safetensors")
                                   ? (folder / "model.safetensors").string()
                                   : checkpoint.path().string();
    TTTForCausalLM model(config);
    std::set<std::string> expected;
    {
        torch::NoGradGuard no_grad;
        for (auto & p : model->named_parameters(/*recurse=*/true)) {
            const std::string name = file_name_of(p.key());
            expected.insert(name);
            CT3_CHECK(checkpoint.contains(name), ErrorKind::not_found, "{}: tensor '{}' is missing", source, name);
            const at::Tensor value = checkpoint.load(name);
            CT3_CHECK(value.sizes() == p.value().sizes(), ErrorKind::invalid_argument,
                      "{}: tensor '{}' has shape [{}] (expected [{}] from config.json)", source, name,
                      fmt::join(value.sizes(), ", "), fmt::join(p.value().sizes(), ", "));
            CT3_CHECK(value.is_floating_point(), ErrorKind::unsupported,
                      "{}: tensor '{}' has dtype {} (expected a float type)", source, name,
                      c10::toString(value.scalar_type()));
            p.value().copy_(value);
        }
    }
    for (const std::string & name : checkpoint.names()) {
        CT3_CHECK(expected.count(name) != 0, ErrorKind::bad_format,
                  "{}: tensor '{}' is not a parameter of the TTT model config.json describes", source, name);
    }
    model->to(device, dtype);
    model->eval();
    return model;
}

}  // namespace ct3
