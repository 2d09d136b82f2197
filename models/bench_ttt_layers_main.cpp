// ct3-bench-ttt-layers: speed of the TTT layers (issue 7, "Benchmarks"; ttt_layers.md §4.4) on one
// device, with random weights in the named shapes (TTTModelConfig::named and a Llama Transformer of
// the same hidden size, layers, heads, SwiGLU size and vocabulary):
//   (a) training tokens/s (forward + backward of the LM loss) of the dual and the primal form, and
//       the Transformer's, at one sequence length; prints dual/primal;
//   (b) prefill and decode ms/token vs context length for TTT-Linear, TTT-MLP and the Transformer
//       with its KV cache: prefill = one forward over `context` tokens from an empty cache; decode =
//       `--decode-tokens` single-token forwards after that prefill; prints TTT/Transformer ratios.
//       TTT decode carries a fixed-size state, so its ms/token should stay flat with the context.
//
//   ct3-bench-ttt-layers --size toy                                      (CPU, seconds)
//   ct3-bench-ttt-layers --size 125m --device cuda --dtype bfloat16 --contexts 1024,2048,4096
//
// Timing: a warm-up pass, then the best of --repeats, with device synchronisation around each timed
// region. JSON lines on stdout (one per measurement, then the ratios), a readable table on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/llama.h"
#include "models/llama_loader.h"
#include "models/log.h"
#include "models/ttt_model.h"

namespace {

struct Options {
    std::string size = "125m", backbone = "mamba", device = "cpu", dtype = "auto";
    std::vector<std::string> models{"ttt-linear", "ttt-mlp", "transformer"};
    std::vector<int64_t> contexts{1024, 2048, 4096, 8192, 16384, 32768};
    int64_t train_seq = 2048, train_batch = 1, batch = 1, decode_tokens = 16;
    int repeats = 2, threads = 0;
    bool skip_train = false, skip_infer = false, skip_primal = false;
};

void sync(const c10::Device & device) {
    if (device.is_cuda()) torch::cuda::synchronize();
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best wall time of `repeats` calls of fn after one warm-up call, synchronised on `device`.
double best_time(const c10::Device & device, int repeats, const std::function<void()> & fn) {
    double best = 1e30;
    for (int r = 0; r <= repeats; ++r) {
        sync(device);
        const double t0 = now_s();
        fn();
        sync(device);
        if (r > 0) best = std::min(best, now_s() - t0);
    }
    return best;
}

ct3::TTTModelConfig ttt_config(const Options & o, const std::string & type, int64_t positions) {
    ct3::TTTModelConfig c;
    if (o.size == "toy") {  // CPU-test scale: every code path, seconds
        c.vocab_size = 256;
        c.hidden_size = 64;
        c.num_hidden_layers = 2;
        c.num_attention_heads = 4;
        c.intermediate_size = 128;
        c.mini_batch_size = 16;
        c.ttt_layer_type = type;
        c.backbone = o.backbone;
        c.ttt_base_lr = ct3::TTTModelConfig::reference_base_lr(type);
    } else {
        c = ct3::TTTModelConfig::named(o.size, type, o.backbone);
    }
    c.max_position_embeddings = positions;
    c.validate("--size " + o.size);
    return c;
}

// The Transformer of the same shape: Llama attention with RoPE and a KV cache, tied embeddings.
ct3::LlamaConfig transformer_config(const ct3::TTTModelConfig & t) {
    ct3::LlamaConfig c;
    c.vocab_size = t.vocab_size;
    c.hidden_size = t.hidden_size;
    c.intermediate_size = t.intermediate_size;
    c.num_hidden_layers = t.num_hidden_layers;
    c.num_attention_heads = t.num_attention_heads;
    c.num_key_value_heads = t.num_attention_heads;
    c.head_dim = t.hidden_size / t.num_attention_heads;
    c.max_position_embeddings = t.max_position_embeddings;
    c.rms_norm_eps = t.rms_norm_eps;
    c.tie_word_embeddings = t.tie_word_embeddings;
    c.validate("the Transformer of --size");
    return c;
}

struct Bench {
    std::shared_ptr<torch::nn::Module> module;
    std::shared_ptr<ct3::CausalLM> lm;
    ct3::TTTForCausalLMImpl * ttt = nullptr;  // null for the Transformer
    int64_t params = 0;
};

Bench build(const Options & o, const std::string & model, int64_t positions, const c10::Device & device,
            c10::ScalarType dtype) {
    Bench b;
    const ct3::TTTModelConfig tc = ttt_config(o, model == "ttt-mlp" ? "mlp" : "linear", positions);
    if (model == "transformer") {
        ct3::LlamaForCausalLM m(transformer_config(tc), /*init_weights=*/true);
        b.module = m.ptr();
        b.lm = m.ptr();
    } else {
        ct3::TTTForCausalLM m(tc);
        b.module = m.ptr();
        b.lm = m.ptr();
        b.ttt = m.get();
    }
    b.module->to(device, dtype);
    for (const auto & p : b.module->parameters()) b.params += p.numel();
    return b;
}

void emit(const nlohmann::json & j) { std::cout << j.dump() << std::endl; }

// A measurement that does not fit the device: a JSON line and a table row say so, the bench goes on.
void out_of_memory(const Options & o, const std::string & model, const std::string & what, const char * bench) {
    emit({{"bench", bench}, {"size", o.size}, {"model", model}, {"what", what}, {"error", "out of memory"}});
    std::fprintf(stderr, "%-12s %-8s %12s  (out of memory: lower --train-batch/--batch, or --skip-primal)\n",
                 model.c_str(), what.c_str(), "OOM");
}

// (a) training tokens/s: forward + backward of the next-token loss (no optimizer step).
void bench_train(const Options & o, const c10::Device & device, c10::ScalarType dtype, nlohmann::json & ratios) {
    auto log = ct3::logger("bench");
    std::fprintf(stderr, "\ntraining, %s, batch %lld x seq %lld (forward + backward)\n%-12s %-8s %12s %10s\n",
                 o.size.c_str(), static_cast<long long>(o.train_batch), static_cast<long long>(o.train_seq), "model",
                 "form", "tokens/s", "params(M)");
    const double tokens = static_cast<double>(o.train_batch * o.train_seq);
    for (const std::string & model : o.models) {
        Bench b = build(o, model, o.train_seq, device, dtype);
        b.module->train();
        at::Tensor ids = torch::randint(3, b.lm->vocab_size(), {o.train_batch, o.train_seq},
                                        torch::TensorOptions().dtype(torch::kInt64).device(device));
        std::vector<ct3::TTTMode> forms{ct3::TTTMode::dual};
        if (b.ttt != nullptr && !o.skip_primal) forms.push_back(ct3::TTTMode::primal);
        std::map<std::string, double> tok_s;
        for (ct3::TTTMode form : forms) {
            const std::string name = b.ttt == nullptr ? "kv" : form == ct3::TTTMode::dual ? "dual" : "primal";
            double t = 0;
            try {
                t = best_time(device, o.repeats, [&] {
                    b.module->zero_grad();
                    at::Tensor logits = b.ttt != nullptr ? b.ttt->forward(ids, form)
                                                         : b.lm->forward_train(ids, at::Tensor(), at::Tensor()).logits;
                    at::Tensor loss = torch::nn::functional::cross_entropy(
                        logits.slice(1, 0, -1).reshape({-1, logits.size(-1)}).to(torch::kFloat32),
                        ids.slice(1, 1).reshape({-1}));
                    loss.backward();
                });
            } catch (const c10::OutOfMemoryError &) {
                // The primal form keeps every token's inner weights for backward: report and go on.
                b.module->zero_grad();
                out_of_memory(o, model, name, "train");
                continue;
            }
            tok_s[name] = tokens / t;
            emit({{"bench", "train"}, {"size", o.size}, {"model", model}, {"form", name}, {"device", device.str()},
                  {"batch", o.train_batch}, {"seq", o.train_seq}, {"tokens_per_s", tokens / t}, {"params", b.params}});
            std::fprintf(stderr, "%-12s %-8s %12.0f %10.1f\n", model.c_str(), name.c_str(), tokens / t,
                         static_cast<double>(b.params) / 1e6);
        }
        if (tok_s.count("dual") && tok_s.count("primal")) {
            const double r = tok_s["dual"] / tok_s["primal"];
            ratios[model + " dual/primal train tokens/s"] = r;
            std::fprintf(stderr, "%-12s dual/primal = %.2fx (paper: > 5x on TPU)\n", model.c_str(), r);
        }
    }
}

// (b) prefill and decode ms/token vs context.
void bench_infer(const Options & o, const c10::Device & device, c10::ScalarType dtype, nlohmann::json & ratios) {
    const int64_t max_ctx = *std::max_element(o.contexts.begin(), o.contexts.end());
    std::map<std::string, std::map<int64_t, std::pair<double, double>>> ms;  // model -> ctx -> (prefill, decode)
    std::fprintf(stderr, "\ninference, %s, batch %lld, %lld decode tokens (ms per token per sequence)\n%-12s %8s %12s %12s\n",
                 o.size.c_str(), static_cast<long long>(o.batch), static_cast<long long>(o.decode_tokens), "model",
                 "context", "prefill", "decode");
    for (const std::string & model : o.models) {
        Bench b = build(o, model, max_ctx + o.decode_tokens + 1, device, dtype);
        b.module->eval();
        torch::NoGradGuard no_grad;
        c10::InferenceMode inference;
        auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
        for (int64_t ctx : o.contexts) {
            at::Tensor prompt = torch::randint(3, b.lm->vocab_size(), {o.batch, ctx}, opts);
            ct3::KVCache cache;
            at::Tensor next;
            double prefill = 0, decode = 0;
            try {
                prefill = best_time(device, o.repeats, [&] {
                    cache = b.lm->make_cache();
                    next = b.lm->forward_tokens(prompt, &cache).select(1, -1).argmax(-1, /*keepdim=*/true);
                });
                // Decode continues the last prefill's cache; the repeats keep extending it, which moves
                // the context by a few tokens only (ctx >> decode_tokens), so no copy of the state is made.
                decode = best_time(device, std::max(1, o.repeats - 1), [&] {
                    for (int64_t i = 0; i < o.decode_tokens; ++i) {
                        next = b.lm->forward_tokens(next, &cache).select(1, -1).argmax(-1, /*keepdim=*/true);
                    }
                });
            } catch (const c10::OutOfMemoryError &) {
                cache = ct3::KVCache();
                out_of_memory(o, model, fmt::format("context {}", ctx), "infer");
                break;  // longer contexts need more
            }
            const double p_ms = 1000.0 * prefill / static_cast<double>(ctx);
            const double d_ms = 1000.0 * decode / static_cast<double>(o.decode_tokens);
            ms[model][ctx] = {p_ms, d_ms};
            emit({{"bench", "infer"}, {"size", o.size}, {"model", model}, {"device", device.str()}, {"batch", o.batch},
                  {"context", ctx}, {"prefill_ms_per_token", p_ms}, {"decode_ms_per_token", d_ms},
                  {"decode_tokens", o.decode_tokens}, {"params", b.params}});
            std::fprintf(stderr, "%-12s %8lld %12.4f %12.4f\n", model.c_str(), static_cast<long long>(ctx), p_ms, d_ms);
        }
    }
    if (!ms.count("transformer")) return;
    std::fprintf(stderr, "\nratios vs the Transformer (< 1 = faster than it)\n%-12s %8s %10s %10s\n", "model", "context",
                 "prefill", "decode");
    for (const auto & [model, by_ctx] : ms) {
        if (model == "transformer") continue;
        for (const auto & [ctx, v] : by_ctx) {
            if (!ms["transformer"].count(ctx)) continue;  // the Transformer ran out of memory there
            const auto & tf = ms["transformer"][ctx];
            const double rp = v.first / tf.first, rd = v.second / tf.second;
            ratios[fmt::format("{} / transformer prefill ms/token @{}", model, ctx)] = rp;
            ratios[fmt::format("{} / transformer decode ms/token @{}", model, ctx)] = rd;
            std::fprintf(stderr, "%-12s %8lld %10.2f %10.2f\n", model.c_str(), static_cast<long long>(ctx), rp, rd);
        }
    }
    // Flatness: decode ms/token at the longest context over the shortest, per model.
    for (const auto & [model, by_ctx] : ms) {
        const double growth = by_ctx.rbegin()->second.second / by_ctx.begin()->second.second;
        ratios[fmt::format("{} decode ms/token @{} / @{}", model, by_ctx.rbegin()->first, by_ctx.begin()->first)] =
            growth;
        std::fprintf(stderr, "%-12s decode ms/token grows %.2fx from context %lld to %lld\n", model.c_str(), growth,
                     static_cast<long long>(by_ctx.begin()->first), static_cast<long long>(by_ctx.rbegin()->first));
    }
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App app{"ct3-bench-ttt-layers: TTT-Linear / TTT-MLP vs Transformer speed (training, prefill, decode)"};
    Options o;
    std::string log_level, models_csv, contexts_csv;
    app.add_option("--size", o.size, "toy, 125m, 350m, 760m or 1.3b");
    app.add_option("--backbone", o.backbone, "TTT backbone: mamba or llama")->check(CLI::IsMember({"mamba", "llama"}));
    app.add_option("--device", o.device, "cpu, cuda, cuda:N");
    app.add_option("--dtype", o.dtype, "auto (bfloat16 on CUDA, float32 on CPU) | float32 | bfloat16 | float16");
    app.add_option("--models", models_csv, "Comma-separated subset of ttt-linear,ttt-mlp,transformer");
    app.add_option("--contexts", contexts_csv, "Comma-separated prefill/decode context lengths (default 1k..32k)");
    app.add_option("--train-seq", o.train_seq, "Sequence length of the training measurement")
        ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
    app.add_option("--train-batch", o.train_batch, "Sequences per training step")->check(CLI::Range(1, 4096));
    app.add_option("--batch", o.batch, "Sequences per prefill/decode call")->check(CLI::Range(1, 4096));
    app.add_option("--decode-tokens", o.decode_tokens, "Tokens decoded after each prefill")->check(CLI::Range(1, 1 << 20));
    app.add_option("--repeats", o.repeats, "Timed repetitions after a warm-up; the best is reported")
        ->check(CLI::Range(1, 100));
    app.add_option("-t,--threads", o.threads, "CPU threads (0 = libtorch default)")->check(CLI::Range(0, 1024));
    app.add_flag("--skip-train", o.skip_train, "Skip (a), the training measurement");
    app.add_flag("--skip-infer", o.skip_infer, "Skip (b), prefill/decode");
    app.add_flag("--skip-primal", o.skip_primal, "Measure only the dual form in (a)");
    ct3::add_log_flags(app, log_level);
    CLI11_PARSE(app, argc, argv);
    try {
        ct3::log_init(log_level);
        if (!models_csv.empty()) {
            o.models.clear();
            for (const auto & m : CLI::detail::split(models_csv, ',')) {
                CT3_CHECK(m == "ttt-linear" || m == "ttt-mlp" || m == "transformer", ct3::ErrorKind::invalid_argument,
                          "--models: '{}' is not one of ttt-linear, ttt-mlp, transformer", m);
                o.models.push_back(m);
            }
        }
        if (!contexts_csv.empty()) {
            o.contexts.clear();
            for (const auto & c : CLI::detail::split(contexts_csv, ',')) {
                int64_t v = 0;
                CT3_CHECK(CLI::detail::lexical_cast(c, v) && v >= 1, ct3::ErrorKind::invalid_argument,
                          "--contexts: '{}' is not a positive integer", c);
                o.contexts.push_back(v);
            }
        }
        CT3_CHECK(!o.models.empty() && !o.contexts.empty(), ct3::ErrorKind::invalid_argument,
                  "--models and --contexts must not be empty");
        if (o.threads > 0) torch::set_num_threads(o.threads);
        torch::manual_seed(0);
        const c10::Device device(o.device);
        const c10::ScalarType dtype = o.dtype == "auto"
                                          ? (device.is_cpu() ? c10::ScalarType::Float : c10::ScalarType::BFloat16)
                                          : ct3::llama_dtype_from_name(o.dtype, "--dtype");
        nlohmann::json ratios = nlohmann::json::object();
        if (!o.skip_train) bench_train(o, device, dtype, ratios);
        if (!o.skip_infer) bench_infer(o, device, dtype, ratios);
        emit({{"bench", "ratios"}, {"size", o.size}, {"device", device.str()}, {"dtype", c10::toString(dtype)},
              {"ratios", ratios}});
        return 0;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "ct3-bench-ttt-layers: error: %s\n", e.what());
        return 1;
    }
}
