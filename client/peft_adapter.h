// LoRA adapters on disk in the Hugging Face PEFT format, so adapters move freely between ct3 and
// peft: a folder with adapter_config.json and adapter_model.safetensors whose tensors are named
// "base_model.model.<module>.lora_{A,B}.weight".
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "client/lora.h"

namespace ct3::client {

// adapter_config.json as PEFT writes it for `config` (LORA, CAUSAL_LM, bias none).
nlohmann::json peft_adapter_config(const LoraConfig & config, const std::string & base_model_name_or_path);

// Reads a PEFT LoRA config. Options ct3 does not implement (DoRA, bias, fan_in_fan_out, rank/alpha
// patterns, other peft types) are refused with an error naming the file and field. `seed` stays 0.
LoraConfig read_peft_adapter_config(const std::filesystem::path & adapter_dir);

// The tensors of adapter_model.safetensors (or adapter_model.bin: refused with a hint to convert).
AdapterTensors read_peft_tensors(const std::filesystem::path & adapter_dir);

// Writes `adapter`'s current state to `dir` (created if needed). Each file is written atomically;
// an existing adapter there is replaced.
void save_peft_adapter(const std::filesystem::path & dir, const LoraAdapter & adapter,
                       const std::string & base_model_name_or_path);

// Injects LoRA as described by `adapter_dir`'s config into `model` and loads its tensors. A tensor
// that matches no module, or a module left without tensors, fails loudly naming the tensor.
std::unique_ptr<LoraAdapter> load_peft_adapter(LlamaForCausalLMImpl & model, const std::filesystem::path & adapter_dir);

}  // namespace ct3::client
