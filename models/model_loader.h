// Loading a causal LM from disk: a Hugging Face model folder (config.json + *.safetensors) or a
// llama2.c checkpoint (.bin). The architecture is read from the files; callers only see CausalLM.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "models/causal_lm.h"

namespace ct3 {

struct LoadOptions {
    std::string device = "cpu";  // "cpu", "cuda", "cuda:1", ... (anything c10::Device parses)
    std::string dtype = "auto";  // auto | float32 | bfloat16 | float16 (auto: the loader picks from checkpoint and device)
};

// Throws ct3::Error naming the path and what was expected when the files are missing, malformed, or
// describe an architecture ct3 does not implement.
std::shared_ptr<CausalLM> load_causal_lm(const std::filesystem::path & path, const LoadOptions & options);

}  // namespace ct3
