#include "models/pretrain/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <optional>
#include <vector>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#include "kb/kb_files.h"
#include "models/adamw.h"
#include "models/error.h"
#include "models/llama.h"
#include "models/log.h"
#include "models/pretrain/distributed.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/packed_loader.h"
#include "models/pretrain/token_shards.h"
#include "models/pretrain/train_checkpoint.h"
#include "models/pretrain/train_log.h"

namespace fs = std::filesystem;

namespace ct3::pretrain {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

// Catches SIGINT/SIGTERM for the duration of training (the loop checkpoints and returns), then
// restores the previous handlers.
class StopSignals {
public:
    StopSignals() {
        g_stop_signal.store(0);
        old_int_ = std::signal(SIGINT, on_stop_signal);
        old_term_ = std::signal(SIGTERM, on_stop_signal);
    }
    ~StopSignals() {
        std::signal(SIGINT, old_int_);
        std::signal(SIGTERM, old_term_);
    }
    bool requested() const { return g_stop_signal.load() != 0; }

private:
    void (*old_int_)(int) = SIG_DFL;
    void (*old_term_)(int) = SIG_DFL;
};

// bf16 autocast on CUDA for the scope's lifetime (the weights and optimizer stay fp32).
class AutocastScope {
public:
    explicit AutocastScope(bool on) : on_(on) {
        if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, true);
        at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
        at::autocast::set_enabled(true);
        at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    }
    ~AutocastScope() {
        if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
        at::autocast::set_enabled(false);
#endif
        at::autocast::clear_cache();
    }

private:
    bool on_;
};

// With several processes "auto" and "cuda" mean this process's GPU, cuda:LOCAL_RANK.
c10::Device pick_device(const std::string & spec, const DistributedConfig & dist) {
    const auto gpu = static_cast<c10::DeviceIndex>(dist.local_rank);
    if (spec == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, gpu) : c10::Device(c10::kCPU);
    if (spec == "cuda" && torch::cuda::is_available()) return c10::Device(c10::kCUDA, gpu);
    CT3_CHECK(dist.world_size == 1 || spec.rfind("cuda:", 0) != 0, ErrorKind::invalid_argument,
              "--device {} with {} processes: every process would use one GPU; give --device cuda (or auto), "
              "each process then takes cuda:LOCAL_RANK", spec, dist.world_size);
    c10::Device device(c10::kCPU);
    try {
        device = c10::Device(spec);
    } catch (const std::exception &) {
        fail(ErrorKind::invalid_argument, "--device '{}' is not a device (expected auto, cpu, cuda or cuda:N)", spec);
    }
    CT3_CHECK(!device.is_cuda() || torch::cuda::is_available(), ErrorKind::unavailable,
              "--device {}: this libtorch or machine has no CUDA device", spec);
    return device;
}

// AdamW groups: matrices and embeddings decay, norms and biases do not (GPT-2/nanoGPT practice). In a
// Transformer those are exactly the 1-D tensors; a TTT layer also has per-head [H, d] norm scales and
// [H, 1] lr biases, kept out of the decay by name.
std::vector<AdamWGroup> parameter_groups(torch::nn::Module & model, double weight_decay) {
    AdamWGroup decay{{}, weight_decay}, no_decay{{}, 0.0};
    for (const auto & p : model.named_parameters(/*recurse=*/true)) {
        const std::string & name = p.key();
        const bool norm_or_bias = name.find("norm") != std::string::npos ||
                                  (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0);
        (p.value().dim() >= 2 && !norm_or_bias ? decay : no_decay).params.push_back(p.value());
    }
    return {decay, no_decay};
}

// Mean loss (nats/token) over the held-out windows, in eval mode without gradients. With several
// processes each takes every world_size-th batch and the sums are all-reduced, so every rank gets
// the single-process value (up to summation order).
double evaluate(torch::nn::Module & model, CausalLM & lm, const ShardManifest & held_out, const TrainOptions & o,
                const c10::Device & device, bool autocast, DataParallel & dp) {
    torch::NoGradGuard no_grad;
    model.eval();
    PackedLoader loader(held_out.shards, o.seq_len, o.micro_batch, o.seed);
    // eval_batches counts global batches (micro_batch * world_size windows), so the held-out windows
    // are those of one process with the same global batch.
    const int64_t batches = o.eval_batches > 0
                                ? std::min(o.eval_batches * dp.world_size(), loader.num_sequential_batches())
                                : loader.num_sequential_batches();
    at::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
    int64_t counted = 0;
    for (int64_t b = dp.rank(); b < batches; b += dp.world_size()) {
        at::Tensor window = loader.sequential_batch(b).to(device);
        at::Tensor inputs = window.slice(1, 0, o.seq_len), targets = window.slice(1, 1, o.seq_len + 1);
        at::Tensor logits;
        {
            AutocastScope scope(autocast);
            logits = lm.forward_tokens(inputs, nullptr);
        }
        total += torch::nn::functional::cross_entropy(
                     logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                     .to(torch::kFloat64);
        counted += targets.numel();
    }
    model.train();
    at::Tensor sums = dp.sum(torch::stack({total, torch::full({}, static_cast<double>(counted), total.options())}));
    const double loss_sum = sums[0].item<double>(), count = sums[1].item<double>();
    return count == 0 ? std::nan("") : loss_sum / count;
}

void report_non_finite(torch::nn::Module & model, int64_t step) {
    for (const auto & p : model.named_parameters(/*recurse=*/true)) {
        const at::Tensor & g = p.value().grad();
        if (!torch::isfinite(p.value()).all().item<bool>()) {
            logger("pretrain")->warn("step {}: parameter {} is not finite", step, p.key());
        }
        if (g.defined() && !torch::isfinite(g).all().item<bool>()) {
            logger("pretrain")->warn("step {}: gradient of {} is not finite", step, p.key());
        }
    }
}

int64_t count_parameters(torch::nn::Module & model) {
    int64_t n = 0;
    for (const at::Tensor & p : model.parameters(/*recurse=*/true)) n += p.numel();
    return n;
}

}  // namespace

double flops_per_token(const LlamaConfig & c, int64_t seq_len) {
    const double d = static_cast<double>(c.hidden_size);
    const double head_dim = static_cast<double>(c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads);
    const double q = c.num_attention_heads * head_dim, kv = c.num_key_value_heads * head_dim;
    const double per_layer = d * q + 2 * d * kv + q * d + 3 * d * static_cast<double>(c.intermediate_size);
    const double matmul_params = c.num_hidden_layers * per_layer + d * static_cast<double>(c.vocab_size);
    return 6 * matmul_params + 12.0 * c.num_hidden_layers * q * static_cast<double>(seq_len);
}

TrainResult train(const PretrainModelConfig & model_config, const TrainOptions & options_in, const fs::path & run_dir,
                  bool restart, const std::function<void(const StepReport &)> & on_step) {
    auto log = logger("pretrain");
    const DistributedConfig dist = DistributedConfig::from_env();
    TrainOptions options = options_in;
    options.world_size = dist.world_size;
    options.validate();
    model_config.validate("model config");
    CT3_CHECK(options.seq_len <= model_config.max_position_embeddings(), ErrorKind::invalid_argument,
              "--seq_len {} exceeds the model's max_position_embeddings {}", options.seq_len,
              model_config.max_position_embeddings());
    const ShardManifest train_set = read_shard_manifest(options.train_data);
    const ShardManifest held_out = read_shard_manifest(options.held_out_data);
    CT3_CHECK(train_set.vocab_size <= model_config.vocab_size(), ErrorKind::invalid_argument,
              "{}: tokens were made with a vocabulary of {} but the model has vocab_size {}",
              options.train_data.string(), train_set.vocab_size, model_config.vocab_size());

    const c10::Device device = pick_device(options.device, dist);
    const bool autocast = device.is_cuda() && options.precision != "fp32";
    CT3_CHECK(!(options.precision == "bf16" && !device.is_cuda()), ErrorKind::unsupported,
              "--precision bf16 needs a CUDA device (CPU training runs in fp32)");

    DataParallel dp(dist, device);

    // Only rank 0 touches the run folder (lock, --restart, run files, log, plot, checkpoints); the
    // others read the checkpoint it vouched for. A refusal on rank 0 is told to every rank, so no
    // rank waits for the others until the timeout.
    std::optional<kb::DirLock> lock;
    std::optional<CheckpointState> resumed;
    std::exception_ptr setup_error;
    if (dp.is_main()) {
        try {
            fs::create_directories(run_dir);
            lock.emplace(run_dir);
            if (restart) discard_checkpoint(run_dir);
            resumed = load_checkpoint_state(run_dir);
            if (resumed) {
                check_resumable(resumed->options, options, (run_dir / "train_options.json").string());
                check_same_model(run_dir, model_config);
            } else {
                write_run_files(run_dir, model_config, options);
            }
        } catch (...) {
            if (!dp.active()) throw;
            setup_error = std::current_exception();
        }
    }
    if (dp.any(setup_error != nullptr)) {
        if (setup_error) std::rethrow_exception(setup_error);
        fail(ErrorKind::invalid_argument, "rank {}: rank 0 refused the run folder {} (its error says why)", dp.rank(),
             run_dir.string());
    }
    if (!dp.is_main()) resumed = load_checkpoint_state(run_dir);

    torch::manual_seed(options.seed);
    // The module (parameters, modes, device) and its CausalLM face are one object.
    const PretrainModel built = build_pretrain_model(model_config);
    torch::nn::Module * model = built.module.get();
    CausalLM & lm = *built.lm;
    model->to(device, torch::kFloat32);
    model->train();
    AdamWConfig adamw_config;
    adamw_config.lr = options.lr;
    adamw_config.beta1 = options.beta1;
    adamw_config.beta2 = options.beta2;
    adamw_config.eps = options.eps;
    AdamW optimizer(parameter_groups(*model, options.weight_decay), adamw_config);
    PackedLoader loader(train_set.shards, options.seq_len, options.micro_batch, options.seed, dp.rank(),
                        dp.world_size());

    TrainResult result;
    if (resumed) {
        restore_checkpoint(run_dir, *resumed, *model, optimizer, loader, device);
        result.steps = resumed->step;
        result.tokens = resumed->tokens;
        result.elapsed_s = resumed->elapsed_s;
        log->info("resuming {} at step {} ({} tokens, {:.1f} s trained)", run_dir.string(), result.steps,
                  result.tokens, result.elapsed_s);
    }
    // Every rank starts from rank 0's weights even if the seeds or the initialisation differ.
    const std::vector<at::Tensor> params = model->parameters(/*recurse=*/true);
    dp.broadcast_parameters(params);
    std::optional<TrainLog> train_log;
    if (dp.is_main()) train_log.emplace(run_dir, resumed ? resumed->step : -1);

    const double fpt = model_flops_per_token(model_config, options.seq_len);
    const double bytes_per_token = held_out.tokens > 0 ? static_cast<double>(held_out.utf8_bytes) / static_cast<double>(held_out.tokens) : 1.0;
    if (dp.is_main()) {
        log->info("model: {}, {:.2f}M parameters, {:.1f} MFLOP/token; {} train tokens in {} windows of {}; "
                  "device {}{}{}",
                  model_config.describe(), static_cast<double>(count_parameters(*model)) / 1e6, fpt / 1e6,
                  train_set.tokens, loader.num_windows(), options.seq_len, device.str(), autocast ? " (bf16 autocast)" : " (fp32)",
                  dp.active() ? fmt::format(", {} processes", dp.world_size()) : std::string());
    }

    // CT3_CHECK_GRADS=1: after every backward, name the parameters whose gradient is not finite (slow:
    // one device sync per parameter; for finding the source of a divergence).
    const char * check_env = std::getenv("CT3_CHECK_GRADS");
    const bool check_grads = check_env && std::string(check_env) == "1";
    StopSignals stop;
    using clock = std::chrono::steady_clock;
    auto interval_start = clock::now();
    const double elapsed_before = result.elapsed_s;
    const auto run_start = clock::now();
    at::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    int64_t interval_steps = 0, interval_tokens = 0;
    at::Tensor grad_norm;

    auto save = [&]() {
        CheckpointState s;
        s.options = options;
        s.step = result.steps;
        s.tokens = result.tokens;
        s.elapsed_s = result.elapsed_s;
        if (dp.is_main()) save_checkpoint(run_dir, s, *model, optimizer, loader, device);
        dp.barrier();  // nobody races ahead of (or exits before) a complete checkpoint
    };

    while (result.steps < options.max_steps) {
        const double lr = learning_rate_at(options, result.steps);
        optimizer.set_lr(lr);
        optimizer.zero_grad();
        for (int64_t micro = 0; micro < options.grad_accum; ++micro) {
            at::Tensor window = loader.next().to(device, /*non_blocking=*/true);
            at::Tensor inputs = window.slice(1, 0, options.seq_len);
            at::Tensor targets = window.slice(1, 1, options.seq_len + 1);
            at::Tensor loss;
            {
                AutocastScope scope(autocast);
                at::Tensor logits = lm.forward_tokens(inputs, nullptr);
                loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                            targets.reshape({-1}));
            }
            (loss / static_cast<double>(options.grad_accum)).backward();
            loss_sum += loss.detach() / static_cast<double>(options.grad_accum);
        }
        // Once per optimizer step, before clipping: clip_and_step sees the global gradient, as in
        // single-process training with the same global batch.
        dp.average_gradients(params);
        if (check_grads) report_non_finite(*model, result.steps + 1);
        grad_norm = optimizer.clip_and_step(options.grad_clip);
        ++result.steps;
        ++interval_steps;
        result.tokens += options.tokens_per_step();
        interval_tokens += options.tokens_per_step();

        const bool last = result.steps == options.max_steps;
        const bool log_point = result.steps % options.log_every == 0 || last;
        // A signal on any rank stops all of them, agreed at the next log point (one all-reduce; with
        // one process: at once).
        bool stopping = dp.active() ? log_point && dp.any(stop.requested()) : stop.requested();
        if (log_point || stopping) {
            LogRow row;
            row.kind = "train";
            row.step = result.steps;
            row.tokens = result.tokens;
            row.loss = dp.average(loss_sum).item<double>() / static_cast<double>(interval_steps);  // syncs
            row.grad_norm = grad_norm.defined() ? grad_norm.item<double>() : 0.0;
            row.lr = lr;
            const double dt = std::chrono::duration<double>(clock::now() - interval_start).count();
            row.tokens_per_s = dt > 0 ? static_cast<double>(interval_tokens) / dt : 0.0;
            row.mfu = device.is_cuda() ? fpt * row.tokens_per_s / (options.peak_tflops * 1e12 * dp.world_size()) : 0.0;
            result.elapsed_s = elapsed_before + std::chrono::duration<double>(clock::now() - run_start).count();
            row.elapsed_s = result.elapsed_s;
            CT3_CHECK(std::isfinite(row.loss), ErrorKind::internal,
                      "training diverged at step {} (loss {}): lower --lr or raise --warmup_steps; the last "
                      "checkpoint is intact",
                      result.steps, row.loss);
            if (train_log) train_log->append(row);
            result.final_train_loss = row.loss;
            if (on_step && dp.is_main()) {
                on_step(StepReport{result.steps, options.max_steps, row.loss, lr, row.tokens_per_s, row.elapsed_s,
                                   false, 0.0});
            }
            loss_sum.zero_();
            interval_steps = 0;
            interval_tokens = 0;
            interval_start = clock::now();
        }
        if ((options.eval_every > 0 && result.steps % options.eval_every == 0) || last) {
            LogRow row;
            row.kind = "eval";
            row.step = result.steps;
            row.tokens = result.tokens;
            row.loss = evaluate(*model, lm, held_out, options, device, autocast, dp);
            row.bits_per_byte = row.loss / std::log(2.0) / bytes_per_token;
            result.elapsed_s = elapsed_before + std::chrono::duration<double>(clock::now() - run_start).count();
            row.elapsed_s = result.elapsed_s;
            if (train_log) {
                train_log->append(row);
                train_log->write_plot();
            }
            result.final_eval_loss = row.loss;
            result.final_eval_bits_per_byte = row.bits_per_byte;
            if (on_step && dp.is_main()) {
                on_step(StepReport{result.steps, options.max_steps, row.loss, lr, 0.0, row.elapsed_s, true,
                                   row.bits_per_byte});
            }
            interval_start = clock::now();  // evaluation time is not training throughput
        }
        if (!dp.active()) stopping = stopping || stop.requested();  // a signal during the report
        const bool checkpoints = options.checkpoint_every >= 0;
        if (checkpoints && ((options.checkpoint_every > 0 && result.steps % options.checkpoint_every == 0) || last ||
                            stopping)) {
            result.elapsed_s = elapsed_before + std::chrono::duration<double>(clock::now() - run_start).count();
            save();
            interval_start = clock::now();
        }
        if (stopping) {
            log->warn("stopped by a signal at step {}: checkpoint written; run again to resume", result.steps);
            result.interrupted = true;
            break;
        }
    }
    if (train_log) train_log->write_plot();
    return result;
}

}  // namespace ct3::pretrain
