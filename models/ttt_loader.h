// TTT language models on disk, in the Hugging Face folder layout the rest of ct3 loads:
//   config.json        "model_type": "ttt", "architectures": ["TTTForCausalLM"] and the fields of the
//                      reference ttt.py TTTConfig (hidden_size, num_hidden_layers, num_attention_heads,
//                      intermediate_size, mini_batch_size, ttt_layer_type, ttt_base_lr, pre_conv,
//                      share_qk, use_gate, conv_kernel, rms_norm_eps, rope_theta, bos/eos_token_id,
//                      vocab_size, tie_word_embeddings) plus max_position_embeddings;
//   model.safetensors  the module names of TTTForCausalLM under "model." as ttt.py's TTTForCausalLM
//                      (model.embed_tokens.weight, model.layers.0.seq_modeling_block.W1, ...,
//                      lm_head.weight when untied).
// ttt.py's pre_conv / share_qk / use_gate are one switch in ct3 (the backbone): all true = mamba,
// all false = llama; mixtures are rejected.
#pragma once

#include <filesystem>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>

#include "models/ttt_model.h"

namespace ct3 {

// True when <folder>/config.json exists and says "model_type": "ttt".
bool is_ttt_model_folder(const std::filesystem::path & folder);

// Parses config.json; `source` (the file) and the field name are in every error (invalid_argument).
TTTModelConfig ttt_config_from_json(const nlohmann::json & j, const std::string & source);
// config.json of `config`; dtype ("float32" | "bfloat16") is written as torch_dtype.
nlohmann::json ttt_config_to_json(const TTTModelConfig & config, const std::string & dtype);

// Writes config.json and model.safetensors into `folder` (created; files replaced atomically).
void save_ttt_model(TTTForCausalLMImpl & model, const std::filesystem::path & folder,
                    c10::ScalarType dtype = c10::ScalarType::Float);

// Loads a folder written by save_ttt_model (or by hand in that layout). Every parameter must be in
// model.safetensors with its shape and a float dtype, and nothing else may be: errors name the file
// and the tensor. The model is returned in eval mode on `device` in `dtype`.
TTTForCausalLM load_ttt(const std::filesystem::path & folder, c10::Device device = c10::Device(c10::DeviceType::CPU),
                        c10::ScalarType dtype = c10::ScalarType::Float);

}  // namespace ct3
