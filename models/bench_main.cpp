// ct3-bench: prefill and decode speed of a decoder LM (a real checkpoint, or random weights in the
// shape of a public model), printed as one JSON line so scripts/bench.sh can put it beside its peer.
//
//   ct3-bench -m ../shared/models/stories260K/stories260K.bin --prompt-tokens 128 --new-tokens 256
//   ct3-bench --shape llama3.2-1b --prompt-tokens 128 --new-tokens 32
//   ct3-bench --shape llama3-8b --device cuda --dtype bfloat16          (GPU build)
//
// Decode is greedy with the KV cache, one token per forward, EOS ignored; timings exclude a warm-up.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/llama.h"
#include "models/llama_loader.h"
#include "models/log.h"
#include "models/model_loader.h"
#include "models/model_shapes.h"

namespace {

std::shared_ptr<ct3::CausalLM> random_model(const std::string & shape_name, const c10::Device & device,
                                            c10::ScalarType dtype) {
    return ct3::random_llama(shape_name, device, dtype).ptr();
}

void sync(const c10::Device & device) {
    if (device.is_cuda()) torch::cuda::synchronize();
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t parameter_bytes(ct3::CausalLM & lm) {
    auto * module = dynamic_cast<torch::nn::Module *>(&lm);
    int64_t bytes = 0;
    if (module != nullptr) {
        for (const auto & p : module->parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
    }
    return bytes;
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App app{"ct3-bench: prefill and decode speed of a decoder LM"};
    std::string model_path, shape, device_name = "cpu", dtype_name = "auto", log_level;
    int64_t prompt_tokens = 128, new_tokens = 64;
    int threads = 0, repeats = 3;
    app.add_option("-m,--model", model_path, "Hugging Face model folder or llama2.c .bin checkpoint");
    app.add_option("--shape", shape, "Random weights in the shape of: llama3-8b, llama3.2-1b, stories260k");
    app.add_option("--device", device_name, "cpu, cuda, cuda:N");
    app.add_option("--dtype", dtype_name, "auto | float32 | bfloat16 | float16");
    app.add_option("--prompt-tokens", prompt_tokens, "Prompt length for the prefill measurement")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
    app.add_option("--new-tokens", new_tokens, "Tokens decoded one at a time")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
    app.add_option("-t,--threads", threads, "CPU threads (0 = libtorch default)")->check(CLI::Range(0, 1024));
    app.add_option("--repeats", repeats, "Timed repetitions; the best is reported")->check(CLI::Range(1, 100));
    ct3::add_log_flags(app, log_level);
    CLI11_PARSE(app, argc, argv);
    try {
        ct3::log_init(log_level);
        CT3_CHECK(model_path.empty() != shape.empty(), ct3::ErrorKind::invalid_argument,
                  "pass exactly one of --model and --shape");
        if (threads > 0) torch::set_num_threads(threads);
        torch::manual_seed(0);
        std::shared_ptr<ct3::CausalLM> lm;
        if (!model_path.empty()) {
            lm = ct3::load_causal_lm(model_path, ct3::LoadOptions{device_name, dtype_name});
        } else {
            const c10::Device device(device_name);
            c10::ScalarType dtype = dtype_name == "auto"
                                        ? (device.is_cpu() ? c10::ScalarType::Float : c10::ScalarType::BFloat16)
                                        : ct3::llama_dtype_from_name(dtype_name, "--dtype");
            lm = random_model(shape, device, dtype);
        }
        const c10::Device device = lm->device();
        CT3_CHECK(prompt_tokens + new_tokens <= lm->max_position_embeddings(), ct3::ErrorKind::invalid_argument,
                  "--prompt-tokens + --new-tokens = {} exceeds the model's {} positions", prompt_tokens + new_tokens,
                  lm->max_position_embeddings());
        torch::NoGradGuard no_grad;
        c10::InferenceMode inference;
        auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
        at::Tensor prompt = torch::randint(3, lm->vocab_size(), {1, prompt_tokens}, opts);

        double best_prefill = 1e30, best_decode = 1e30;
        for (int r = 0; r <= repeats; ++r) {  // r == 0 is the warm-up
            ct3::KVCache cache = lm->make_cache();
            sync(device);
            double t0 = now_s();
            at::Tensor logits = lm->forward_tokens(prompt, &cache);
            at::Tensor next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);
            sync(device);
            double t1 = now_s();
            for (int64_t i = 0; i < new_tokens; ++i) {
                logits = lm->forward_tokens(next, &cache);
                next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);
            }
            sync(device);
            double t2 = now_s();
            if (r == 0) continue;
            best_prefill = std::min(best_prefill, t1 - t0);
            best_decode = std::min(best_decode, t2 - t1);
        }
        const int64_t bytes = parameter_bytes(*lm);
        nlohmann::json result = {
            {"impl", "ct3"},
            {"model", model_path.empty() ? shape : model_path},
            {"device", device.str()},
            {"dtype", dtype_name},
            {"threads", torch::get_num_threads()},
            {"prompt_tokens", prompt_tokens},
            {"new_tokens", new_tokens},
            {"parameter_bytes", bytes},
            {"prefill_tok_s", prompt_tokens / best_prefill},
            {"decode_ms_per_token", 1000.0 * best_decode / new_tokens},
            {"decode_tok_s", new_tokens / best_decode},
        };
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "ct3-bench: error: %s\n", e.what());
        return 1;
    }
}
