// ct3-bench-ttt: seconds per test-time-training query (reset, fine-tune on N samples, greedy
// generation) and per adapter-cache hit, with the roofline of the same work. One JSON line on stdout,
// so scripts/bench_ttt.sh can put it beside the transformers + peft peer (scripts/bench_ttt_peer.py),
// which builds the same samples from the same formula.
//
//   ct3-bench-ttt --shape llama3-8b --device cuda --dtype bfloat16       (GPU build)
//   ct3-bench-ttt -m ../shared/models/stories260K/stories260K.bin        (CPU, the shipped default model)
#include <chrono>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "client/adapter_cache.h"
#include "client/lora.h"
#include "client/ttt_engine.h"
#include "client/ttt_trainer.h"
#include "models/error.h"
#include "models/log.h"
#include "models/model_loader.h"
#include "models/model_shapes.h"
#include "models/program.h"

using namespace ct3::client;

namespace {

struct Options {
    std::string model, shape, device = "cpu", dtype = "auto", log_level;
    int queries = 3;        // the first one is a warm-up, reported apart
    int samples = 32;
    int sample_tokens = 256;
    int prompt_tokens = 64;
    int new_tokens = 256;
    int epochs = 2;
    int64_t rank = 128;
    double peak_tflops = 790.0;  // H100 SXM dense bf16
    double peak_tbps = 3.0;      // H100 SXM HBM3 (as the roofline)
};

// Sample i has 128 + (37 i mod 129) tokens (<= 256 for the default), ids from a fixed formula; the
// peer script uses the same formula.
std::vector<TrainSample> make_samples(const Options & o, int64_t vocab) {
    std::vector<TrainSample> out;
    const int64_t lo = o.sample_tokens / 2, span = o.sample_tokens - lo + 1;
    for (int i = 0; i < o.samples; ++i) {
        TrainSample s;
        const int64_t n = lo + (37 * i) % span;
        for (int64_t j = 0; j < n; ++j) s.ids.push_back(static_cast<int32_t>((7919 * i + 104729 * j + 3) % vocab));
        out.push_back(std::move(s));
    }
    return out;
}

void sync(const c10::Device & device) {
    if (device.is_cuda()) torch::cuda::synchronize();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Greedy decoding with the KV cache, `n` tokens after the prompt, EOS ignored.
void greedy(ct3::CausalLM & lm, const at::Tensor & prompt, int n) {
    c10::InferenceMode inference;  // as generate()
    ct3::KVCache cache = lm.make_cache();
    at::Tensor logits = lm.forward_tokens(prompt, &cache);
    at::Tensor next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);
    for (int i = 1; i < n; ++i) next = lm.forward_tokens(next, &cache).select(1, -1).argmax(-1, true);
}

struct Roofline {
    double train_s = 0, generate_s = 0;
};

// Frozen base: a step reads every weight twice (forward, backward for the input gradients) and costs
// 4 x matmul-params FLOPs per token; LoRA adds 6 x its params per token. A generated token reads
// every weight once at 2 FLOPs per matmul param. The embedding table is a lookup, not a matmul.
Roofline roofline(ct3::LlamaForCausalLMImpl & model, const LoraAdapter & adapter, const std::vector<TrainSample> & samples,
                  const Options & o) {
    double matmul_params = 0, matmul_bytes = 0;
    for (const auto & p : model.named_parameters()) {
        if (p.key().find("lora_") != std::string::npos || p.value().dim() != 2) continue;
        const bool embedding = p.key() == "model.embed_tokens.weight";
        if (embedding && model.lm_head) continue;  // untied: the lookup reads one row
        matmul_params += static_cast<double>(p.value().numel());
        matmul_bytes += static_cast<double>(p.value().numel() * p.value().element_size());
    }
    const double lora_params = static_cast<double>(adapter.num_parameters());
    const double flops = o.peak_tflops * 1e12, bw = o.peak_tbps * 1e12;
    Roofline r;
    for (int e = 0; e < o.epochs; ++e) {
        for (const TrainSample & s : samples) {
            const double T = static_cast<double>(s.ids.size());
            r.train_s += std::max((4 * matmul_params + 6 * lora_params) * T / flops, 2 * matmul_bytes / bw);
        }
    }
    r.generate_s = std::max(2 * matmul_params * o.prompt_tokens / flops, matmul_bytes / bw) +
                   (o.new_tokens - 1) * std::max(2 * matmul_params / flops, matmul_bytes / bw);
    return r;
}

int run(const Options & o) {
    auto log = ct3::logger("bench");
    CT3_CHECK(o.model.empty() != o.shape.empty(), ct3::ErrorKind::invalid_argument, "pass exactly one of --model and --shape");
    const c10::Device device(o.device);
    std::shared_ptr<ct3::CausalLM> lm;
    if (o.shape.empty()) {
        ct3::LoadOptions load;
        load.device = o.device;
        load.dtype = o.dtype;
        lm = ct3::load_causal_lm(o.model, load);
    } else {
        const c10::ScalarType dtype = o.dtype == "float32" ? torch::kFloat32
                                      : o.dtype == "float16" ? torch::kFloat16
                                                             : torch::kBFloat16;
        lm = ct3::random_llama(o.shape, device, dtype).ptr();
    }
    ct3::LlamaForCausalLMImpl & model = as_llama(*lm);
    LoraConfig lora;
    lora.r = o.rank;
    auto adapter = LoraAdapter::inject(model, lora);
    const std::vector<TrainSample> samples = make_samples(o, lm->vocab_size());
    std::vector<int64_t> prompt_ids;
    for (int j = 0; j < o.prompt_tokens; ++j) prompt_ids.push_back((31 * j + 5) % lm->vocab_size());
    const at::Tensor prompt = torch::tensor(prompt_ids, torch::kInt64).view({1, -1});
    TTTOptions ttt;
    ttt.num_epochs = o.epochs;
    const int32_t pad = lm->eos_token_ids().empty() ? 0 : lm->eos_token_ids().front();

    std::vector<double> train_s, generate_s;
    for (int q = 0; q < o.queries; ++q) {
        adapter->reset();
        sync(device);
        auto t0 = std::chrono::steady_clock::now();
        fine_tune(*lm, *adapter, samples, pad, ttt);
        sync(device);
        train_s.push_back(seconds_since(t0));
        t0 = std::chrono::steady_clock::now();
        greedy(*lm, prompt, o.new_tokens);
        sync(device);
        generate_s.push_back(seconds_since(t0));
        log->info("query {}{}: train {:.3f} s, generate {:.3f} s", q, q == 0 ? " (warm-up)" : "", train_s.back(),
                  generate_s.back());
    }

    // Adapter-cache hit: lookup among 4 entries on the device + pointer swap, then the same generation.
    AdapterCacheOptions cache_options;
    cache_options.device = device.str();
    AdapterCache cache(cache_options);
    for (int i = 0; i < 4; ++i) {
        at::Tensor key = torch::randn({384});
        cache.insert("q" + std::to_string(i), key, std::make_shared<const AdapterTensors>(adapter->clone_state()));
    }
    const at::Tensor probe = torch::tensor(std::vector<float>(384, 1.0f));
    cache.insert("probe", probe, std::make_shared<const AdapterTensors>(adapter->clone_state()));
    sync(device);
    auto t0 = std::chrono::steady_clock::now();
    auto hit = cache.lookup(probe);
    CT3_CHECK(hit.has_value(), ct3::ErrorKind::internal, "bench: the probe must hit the cache");
    adapter->use(*hit->adapter, "bench cache");
    sync(device);
    const double swap_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    greedy(*lm, prompt, o.new_tokens);
    sync(device);
    const double hit_generate_s = seconds_since(t0);

    auto mean_after_warmup = [](const std::vector<double> & v) {
        if (v.size() == 1) return v[0];
        double sum = 0;
        for (size_t i = 1; i < v.size(); ++i) sum += v[i];
        return sum / static_cast<double>(v.size() - 1);
    };
    const double train = mean_after_warmup(train_s), generate = mean_after_warmup(generate_s);
    const Roofline roof = roofline(model, *adapter, samples, o);
    int64_t tokens = 0;
    for (const TrainSample & s : samples) tokens += static_cast<int64_t>(s.ids.size());
    nlohmann::json out = {
        {"impl", "ct3"},
        {"model", o.shape.empty() ? o.model : o.shape},
        {"device", o.device},
        {"dtype", c10::toString(model.dtype())},
        {"lora_rank", o.rank},
        {"lora_params", adapter->num_parameters()},
        {"samples", o.samples},
        {"sample_tokens_total", tokens},
        {"epochs", o.epochs},
        {"new_tokens", o.new_tokens},
        {"threads", torch::get_num_threads()},
        {"train_s", train},
        {"generate_s", generate},
        {"query_s", train + generate},
        {"warmup_query_s", train_s[0] + generate_s[0]},
        {"cache_hit_s", swap_s + hit_generate_s},
        {"cache_swap_s", swap_s},
        {"roofline_train_s", roof.train_s},
        {"roofline_generate_s", roof.generate_s},
        {"roofline_query_s", roof.train_s + roof.generate_s},
    };
    std::cout << out.dump() << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char ** argv) {
    Options o;
    CLI::App app{"ct3-bench-ttt: seconds per test-time-training query and per adapter-cache hit"};
    app.add_option("-m,--model", o.model, "Model folder or llama2.c .bin");
    app.add_option("--shape", o.shape, "Random weights in the shape of: " + ct3::random_llama_shapes());
    app.add_option("--device", o.device, "cpu, cuda, cuda:N")->capture_default_str();
    app.add_option("--dtype", o.dtype, "auto | float32 | bfloat16 | float16 (random shapes: bfloat16 unless float32/16)")
        ->capture_default_str();
    app.add_option("--queries", o.queries, "Queries timed (the first is a warm-up)")->capture_default_str();
    app.add_option("--samples", o.samples, "Training samples per query")->capture_default_str();
    app.add_option("--sample_tokens", o.sample_tokens, "Longest sample (lengths span half of it to all)")
        ->capture_default_str();
    app.add_option("--prompt_tokens", o.prompt_tokens, "Prompt length")->capture_default_str();
    app.add_option("--new_tokens", o.new_tokens, "Greedy tokens generated")->capture_default_str();
    app.add_option("--epochs", o.epochs, "Epochs")->capture_default_str();
    app.add_option("--lora_rank", o.rank, "LoRA rank")->capture_default_str();
    app.add_option("--peak_tflops", o.peak_tflops, "Roofline compute peak")->capture_default_str();
    app.add_option("--peak_tbps", o.peak_tbps, "Roofline memory bandwidth (TB/s)")->capture_default_str();
    ct3::add_log_flags(app, o.log_level);
    CLI11_PARSE(app, argc, argv);
    return ct3::run_program("ct3-bench-ttt", [&] {
        ct3::log_init(o.log_level);
        return run(o);
    });
}
