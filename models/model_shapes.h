// Random-weight models in the shapes of public checkpoints, for benchmarks: speed depends on the
// shapes only, so no multi-gigabyte download is needed to measure an 8B-class model.
#pragma once

#include <memory>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "models/llama.h"

namespace ct3 {

// "llama3-8b", "llama3.2-1b", "stories260k". Throws invalid_argument (naming --shape and the choices)
// for other names. The model is in eval mode on `device` in `dtype`; weights are the modules'
// default fill (their values do not matter for speed).
LlamaForCausalLM random_llama(const std::string & shape_name, const c10::Device & device, c10::ScalarType dtype);

// The config of a shape (same names and errors as random_llama).
LlamaConfig llama_shape_config(const std::string & shape_name);

// Comma-separated shape names, for help texts.
std::string random_llama_shapes();

}  // namespace ct3
