// Export of a trained run in the Hugging Face layout, so that ct3's loaders, transformers and the
// client load it unchanged: config.json, generation_config.json, model.safetensors (bf16 or fp32),
// tokenizer.model + tokenizer_config.json + special_tokens_map.json. A TTT run is written in the TTT
// folder layout of models/ttt_loader.h ("model_type": "ttt"), which ct3's model loader reads.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "models/llama_config.h"

namespace ct3::pretrain {

// The config.json of a LlamaForCausalLM with `config`'s sizes; dtype is "float32" or "bfloat16".
nlohmann::json hf_config_json(const LlamaConfig & config, const std::string & dtype);

struct ExportOptions {
    std::filesystem::path run_dir;          // a ct3-pretrain run (config.json + checkpoint/)
    std::filesystem::path tokenizer_model;  // the sentencepiece model the data was tokenized with
    std::filesystem::path out_dir;
    std::string dtype = "bfloat16";         // bfloat16 | float32
};

// Writes the model folder (files replaced atomically; out_dir created). Throws naming the file.
void export_hf(const ExportOptions & options);

}  // namespace ct3::pretrain
