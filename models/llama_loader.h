// Loads a Hugging Face Llama-family folder (config.json + model.safetensors or sharded index) into a
// LlamaForCausalLM, in the requested dtype and on the requested device.
#pragma once

#include <filesystem>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "models/llama.h"

namespace ct3 {

struct LlamaLoadOptions {
    c10::ScalarType dtype = c10::ScalarType::Float;  // float32, float16 or bfloat16
    c10::Device device = c10::Device(c10::DeviceType::CPU);
};

// "float32"/"fp32"/"float", "float16"/"fp16"/"half", "bfloat16"/"bf16" -> dtype; `source` names the
// flag or field in the error for anything else.
c10::ScalarType llama_dtype_from_name(const std::string & name, const std::string & source);

// Every model parameter must be in the checkpoint with the same shape and a float dtype; checkpoint
// tensors the model does not have are an error (wrong architecture), except rotary inv_freq buffers
// and lm_head.weight of a tied model, which HF also ignores. Errors name the folder and the tensor.
LlamaForCausalLM load_llama(const std::filesystem::path & folder, const LlamaLoadOptions & options = {});

}  // namespace ct3
