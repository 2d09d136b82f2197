#include "models/llama_config.h"

#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "models/config_fields.h"
#include "models/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3 {

namespace {

using namespace config_fields;

constexpr const char * kSupported =
    "LlamaForCausalLM (model_type llama), MistralForCausalLM (mistral), Qwen2ForCausalLM (qwen2)";

int32_t token_id(const json & v, const char * key, const std::string & source) {
    CT3_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= std::numeric_limits<int32_t>::max(),
              ErrorKind::invalid_argument, "{}: field '{}' must be a non-negative token id (got {})", source, key,
              v.dump());
    return static_cast<int32_t>(v.get<int64_t>());
}

// Reads rope_scaling (transformers 4) or rope_parameters (transformers 5, which also carries rope_theta).
RopeConfig parse_rope(const json & j, const std::string & source) {
    RopeConfig rope;
    rope.theta = get_double(j, "rope_theta", 10000.0, source);
    const char * key = has(j, "rope_parameters") ? "rope_parameters" : "rope_scaling";
    if (!has(j, key)) return rope;
    const json & r = j.at(key);
    CT3_CHECK(r.is_object(), ErrorKind::invalid_argument, "{}: field '{}' must be an object (got {})", source, key,
              r.dump());
    const std::string field = std::string(key);
    std::string type = get_string(r, "rope_type", "", source + " " + field);
    if (type.empty()) type = get_string(r, "type", "default", source + " " + field);
    rope.type = type;
    rope.theta = get_double(r, "rope_theta", rope.theta, source + " " + field);
    if (has(r, "partial_rotary_factor")) {
        CT3_CHECK(get_double(r, "partial_rotary_factor", 1.0, source) == 1.0, ErrorKind::unsupported,
                  "{}: {}.partial_rotary_factor != 1 is not supported", source, field);
    }
    if (type == "default") return rope;
    if (type == "linear") {
        rope.factor = get_double(r, "factor", 0.0, source + " " + field);
        CT3_CHECK(rope.factor >= 1.0, ErrorKind::invalid_argument, "{}: {}.factor must be >= 1 for linear scaling",
                  source, field);
        return rope;
    }
    if (type == "llama3") {
        const std::string where = source + " " + field;
        for (const char * required :
             {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
            CT3_CHECK(has(r, required), ErrorKind::invalid_argument, "{}: {}.{} is required for rope_type llama3",
                      source, field, required);
        }
        rope.factor = get_double(r, "factor", 0.0, where);
        rope.low_freq_factor = get_double(r, "low_freq_factor", 0.0, where);
        rope.high_freq_factor = get_double(r, "high_freq_factor", 0.0, where);
        rope.original_max_position_embeddings = get_int(r, "original_max_position_embeddings", 0, where);
        CT3_CHECK(rope.factor > 0.0, ErrorKind::invalid_argument, "{}: {}.factor must be > 0", source, field);
        CT3_CHECK(rope.low_freq_factor > 0.0 && rope.high_freq_factor > rope.low_freq_factor,
                  ErrorKind::invalid_argument,
                  "{}: {}.high_freq_factor ({}) must exceed low_freq_factor ({}) and both be > 0", source, field,
                  rope.high_freq_factor, rope.low_freq_factor);
        CT3_CHECK(rope.original_max_position_embeddings > 0, ErrorKind::invalid_argument,
                  "{}: {}.original_max_position_embeddings must be > 0", source, field);
        return rope;
    }
    fail_hint(ErrorKind::unsupported, "supported rope types: default, linear, llama3",
              "{}: {} has rope type '{}', which ct3 does not implement", source, field, type);
}

}  // namespace

const char * supported_llama_architectures() { return kSupported; }

LlamaConfig LlamaConfig::from_json(const json & j, const std::string & source) {
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "{}: a model config must be a JSON object", source);
    LlamaConfig c;

    // Architecture: model_type and architectures[0] must agree on one of the supported families.
    std::string model_type = get_string(j, "model_type", "", source);
    std::string arch;
    if (has(j, "architectures")) {
        const json & a = j.at("architectures");
        CT3_CHECK(a.is_array() && a.size() == 1 && a[0].is_string(), ErrorKind::invalid_argument,
                  "{}: field 'architectures' must be a list of one name (got {})", source, a.dump());
        arch = a[0].get<std::string>();
    }
    static const std::pair<const char *, const char *> kFamilies[] = {
        {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
    bool found = false;
    for (const auto & [type, name] : kFamilies) {
        if ((model_type.empty() || model_type == type) && (arch.empty() || arch == name) &&
            !(model_type.empty() && arch.empty())) {
            c.model_type = type;
            c.architecture = name;
            found = true;
        }
    }
    if (!found) {
        fail(ErrorKind::unsupported, "{}: unsupported model (architectures '{}', model_type '{}'); supported: {}",
             source, arch, model_type, kSupported);
    }
    const bool llama = c.model_type == "llama";
    const bool qwen2 = c.model_type == "qwen2";

    if (has(j, "quantization_config")) {
        fail(ErrorKind::unsupported, "{}: quantized checkpoints ('quantization_config') are not supported", source);
    }
    const std::string act = get_string(j, "hidden_act", "silu", source);
    CT3_CHECK(act == "silu", ErrorKind::unsupported, "{}: field 'hidden_act' is '{}'; only 'silu' is supported", source,
              act);

    c.vocab_size = get_int(j, "vocab_size", 0, source);
    c.hidden_size = get_int(j, "hidden_size", 0, source);
    c.intermediate_size = get_int(j, "intermediate_size", 0, source);
    c.num_hidden_layers = get_int(j, "num_hidden_layers", 0, source);
    c.num_attention_heads = get_int(j, "num_attention_heads", 0, source);
    c.num_key_value_heads = get_int(j, "num_key_value_heads", c.num_attention_heads, source);
    if (!has(j, "head_dim")) {
        CT3_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0, ErrorKind::invalid_argument,
                  "{}: field 'hidden_size' ({}) must be divisible by 'num_attention_heads' ({})", source,
                  c.hidden_size, c.num_attention_heads);
    }
    c.head_dim = get_int(j, "head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0, source);
    c.max_position_embeddings = get_int(j, "max_position_embeddings", 2048, source);
    c.rms_norm_eps = get_double(j, "rms_norm_eps", 1e-6, source);
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false, source);
    c.rope = parse_rope(j, source);

    // Biases: Llama has attention_bias/mlp_bias; Qwen2 hard-codes q/k/v bias; Mistral has none.
    if (llama) {
        c.qkv_bias = c.o_bias = get_bool(j, "attention_bias", false, source);
        c.mlp_bias = get_bool(j, "mlp_bias", false, source);
    } else {
        CT3_CHECK(!has(j, "attention_bias") || (!qwen2 && !get_bool(j, "attention_bias", false, source)),
                  ErrorKind::unsupported, "{}: field 'attention_bias' is not meaningful for {} (HF ignores it)",
                  source, c.architecture);
        CT3_CHECK(!get_bool(j, "mlp_bias", false, source), ErrorKind::unsupported,
                  "{}: field 'mlp_bias' = true is not supported for {}", source, c.architecture);
        c.qkv_bias = qwen2;
    }

    // Sliding window: Mistral applies it to every layer; Qwen2 only when use_sliding_window is set (and
    // then only from max_window_layers on), which we do not implement.
    if (qwen2) {
        CT3_CHECK(!get_bool(j, "use_sliding_window", false, source), ErrorKind::unsupported,
                  "{}: field 'use_sliding_window' = true is not supported for Qwen2", source);
    } else if (c.model_type == "mistral") {
        c.sliding_window = get_int(j, "sliding_window", 0, source);
        CT3_CHECK(c.sliding_window >= 0, ErrorKind::invalid_argument, "{}: field 'sliding_window' must be >= 0",
                  source);
    }
    if (has(j, "layer_types")) {
        const json & lt = j.at("layer_types");
        CT3_CHECK(lt.is_array(), ErrorKind::invalid_argument, "{}: field 'layer_types' must be a list", source);
        for (const auto & t : lt) {
            CT3_CHECK(t.is_string() && t.get<std::string>() == "full_attention", ErrorKind::unsupported,
                      "{}: field 'layer_types' contains {}; only 'full_attention' layers are supported", source,
                      t.dump());
        }
    }

    // Absent ids take the HF class defaults (Llama/Mistral: bos 1, eos 2; Qwen2: none); null means none.
    c.bos_token_id = qwen2 ? -1 : 1;
    if (j.contains("bos_token_id")) {
        c.bos_token_id = has(j, "bos_token_id") ? token_id(j["bos_token_id"], "bos_token_id", source) : -1;
    }
    c.pad_token_id = has(j, "pad_token_id") ? token_id(j["pad_token_id"], "pad_token_id", source) : -1;
    if (!j.contains("eos_token_id")) {
        if (!qwen2) c.eos_token_ids = {2};
    } else if (has(j, "eos_token_id")) {
        const json & e = j.at("eos_token_id");
        if (e.is_array()) {
            for (const auto & id : e) c.eos_token_ids.push_back(token_id(id, "eos_token_id", source));
        } else {
            c.eos_token_ids.push_back(token_id(e, "eos_token_id", source));
        }
    }
    c.dtype = get_string(j, "dtype", get_string(j, "torch_dtype", "", source), source);
    c.validate(source);
    return c;
}

LlamaConfig LlamaConfig::from_file(const fs::path & path) {
    fs::path file = fs::is_directory(path) ? path / "config.json" : path;
    std::ifstream in(file);
    CT3_CHECK(in.good(), ErrorKind::not_found, "cannot open model config {}", file.string());
    json j;
    try {
        j = json::parse(in);
    } catch (const json::exception & e) {
        fail(ErrorKind::bad_format, "{}: not valid JSON ({})", file.string(), e.what());
    }
    return from_json(j, file.string());
}

void LlamaConfig::validate(const std::string & source) const {
    auto positive = [&](int64_t v, const char * field) {
        CT3_CHECK(v > 0, ErrorKind::invalid_argument, "{}: field '{}' must be > 0 (got {})", source, field, v);
    };
    positive(vocab_size, "vocab_size");
    positive(hidden_size, "hidden_size");
    positive(intermediate_size, "intermediate_size");
    positive(num_hidden_layers, "num_hidden_layers");
    positive(num_attention_heads, "num_attention_heads");
    positive(num_key_value_heads, "num_key_value_heads");
    positive(head_dim, "head_dim");
    positive(max_position_embeddings, "max_position_embeddings");
    CT3_CHECK(num_attention_heads % num_key_value_heads == 0, ErrorKind::invalid_argument,
              "{}: field 'num_attention_heads' ({}) must be a multiple of 'num_key_value_heads' ({})", source,
              num_attention_heads, num_key_value_heads);
    CT3_CHECK(head_dim % 2 == 0, ErrorKind::invalid_argument, "{}: field 'head_dim' ({}) must be even for RoPE", source,
              head_dim);
    CT3_CHECK(rms_norm_eps > 0.0, ErrorKind::invalid_argument, "{}: field 'rms_norm_eps' must be > 0", source);
    CT3_CHECK(rope.theta > 0.0, ErrorKind::invalid_argument, "{}: field 'rope_theta' must be > 0", source);
    // Guard against absurd sizes from hostile configs before anything is allocated (1<<24 = 16M per axis).
    constexpr int64_t kMax = int64_t(1) << 24;
    for (auto [v, field] : {std::pair{vocab_size, "vocab_size"}, {hidden_size, "hidden_size"},
                            {intermediate_size, "intermediate_size"}, {num_hidden_layers, "num_hidden_layers"},
                            {num_attention_heads * head_dim, "num_attention_heads * head_dim"}}) {
        CT3_CHECK(v <= kMax, ErrorKind::invalid_argument, "{}: field '{}' = {} is implausibly large", source, field, v);
    }
}

}  // namespace ct3
