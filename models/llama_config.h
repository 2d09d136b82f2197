// Hyperparameters of the Llama family (Llama 2/3/3.1/3.2, SmolLM, TinyLlama, Mistral, Qwen2) as read
// from a Hugging Face config.json. Keys that do not change the math are ignored (HF configs carry many);
// keys that would change it in a way we do not implement are rejected with ErrorKind::unsupported, so a
// model is never silently run with the wrong computation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ct3 {

// Rotary position embedding parameters (transformers' rope_scaling / rope_parameters).
struct RopeConfig {
    std::string type = "default";  // "default" | "linear" | "llama3"
    double theta = 10000.0;
    double factor = 1.0;            // linear and llama3
    double low_freq_factor = 1.0;   // llama3
    double high_freq_factor = 4.0;  // llama3
    int64_t original_max_position_embeddings = 8192;  // llama3
};

struct LlamaConfig {
    std::string model_type = "llama";                // "llama" | "mistral" | "qwen2"
    std::string architecture = "LlamaForCausalLM";
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;
    int64_t head_dim = 0;
    int64_t max_position_embeddings = 2048;
    int64_t sliding_window = 0;  // 0 = full attention; else keys older than this many positions are masked
    double rms_norm_eps = 1e-6;
    RopeConfig rope;
    bool tie_word_embeddings = false;
    bool qkv_bias = false;  // llama: attention_bias; qwen2: always true
    bool o_bias = false;    // llama: attention_bias; qwen2: false
    bool mlp_bias = false;
    int32_t bos_token_id = -1;
    int32_t pad_token_id = -1;
    std::vector<int32_t> eos_token_ids;
    std::string dtype;  // torch_dtype / dtype as written ("float32", "bfloat16", ...); empty when absent

    // Parses a config.json object; `source` names it in errors (usually the file path).
    static LlamaConfig from_json(const nlohmann::json & j, const std::string & source);
    // Reads and parses <path> (a config.json file or a folder containing one).
    static LlamaConfig from_file(const std::filesystem::path & path);

    // Throws ErrorKind::invalid_argument naming the field when sizes are inconsistent.
    void validate(const std::string & source) const;
};

// The (architecture, model_type) pairs we implement, for error messages.
const char * supported_llama_architectures();

}  // namespace ct3
