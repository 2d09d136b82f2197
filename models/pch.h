// Precompiled header of ct3_models: the heavy, stable includes (libtorch above all).
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <fmt/format.h>
#include <string>
#include <vector>
#include <unordered_map>
#include <memory>
