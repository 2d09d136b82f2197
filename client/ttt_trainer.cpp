#include "client/ttt_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "models/adamw.h"
#include "models/causal_lm.h"
#include "models/error.h"
#include "models/tokenizer.h"

namespace F = torch::nn::functional;

namespace ct3::client {

void TTTOptions::validate() const {
    CT3_CHECK(num_epochs >= 1, ErrorKind::invalid_argument, "--num_epochs must be >= 1 (got {})", num_epochs);
    CT3_CHECK(learning_rate > 0 && std::isfinite(learning_rate), ErrorKind::invalid_argument,
              "--learning_rate must be > 0 (got {})", learning_rate);
    CT3_CHECK(weight_decay >= 0, ErrorKind::invalid_argument, "weight decay must be >= 0 (got {})", weight_decay);
    CT3_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0, ErrorKind::invalid_argument,
              "AdamW needs betas in [0, 1) and eps > 0");
    CT3_CHECK(batch_size >= 1, ErrorKind::invalid_argument, "--batch_size must be >= 1 (got {})", batch_size);
    CT3_CHECK(max_length >= 2, ErrorKind::invalid_argument, "--max_length must be >= 2 (got {})", max_length);
    CT3_CHECK(pad_to_multiple_of >= 1, ErrorKind::invalid_argument, "pad_to_multiple_of must be >= 1");
}

std::vector<int32_t> tokenize_training_text(const Tokenizer & tokenizer, const std::string & text, int max_length,
                                            int32_t eos_id) {
    EncodeOptions options;
    options.add_special_tokens = true;
    options.max_length = static_cast<size_t>(max_length);
    std::vector<int32_t> ids = tokenizer.encode(text, options);
    if (eos_id >= 0 && (ids.empty() || ids.back() != eos_id) && ids.size() < static_cast<size_t>(max_length)) {
        ids.push_back(eos_id);
    }
    return ids;
}

TrainBatch collate(const std::vector<const TrainSample *> & rows, int32_t pad_id, int pad_to_multiple_of) {
    CT3_CHECK(!rows.empty(), ErrorKind::invalid_argument, "collate: no rows");
    size_t longest = 0;
    for (const TrainSample * s : rows) longest = std::max(longest, s->ids.size());
    const int64_t m = pad_to_multiple_of;
    const int64_t T = (static_cast<int64_t>(longest) + m - 1) / m * m;
    const int64_t B = static_cast<int64_t>(rows.size());
    TrainBatch batch;
    batch.input_ids = torch::full({B, T}, static_cast<int64_t>(pad_id < 0 ? 0 : pad_id), torch::kInt64);
    batch.attention_mask = torch::zeros({B, T}, torch::kInt64);
    batch.labels = torch::full({B, T}, int64_t{-100}, torch::kInt64);
    auto ids = batch.input_ids.accessor<int64_t, 2>();
    auto mask = batch.attention_mask.accessor<int64_t, 2>();
    auto labels = batch.labels.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
        const auto & row = rows[static_cast<size_t>(b)]->ids;
        for (size_t t = 0; t < row.size(); ++t) {
            ids[b][static_cast<int64_t>(t)] = row[t];
            mask[b][static_cast<int64_t>(t)] = 1;
            labels[b][static_cast<int64_t>(t)] = row[t];
        }
        batch.weights.push_back(rows[static_cast<size_t>(b)]->weight);
    }
    return batch;
}

std::vector<size_t> reduce_by_score(const std::vector<double> & scores) {
    std::vector<size_t> keep;
    if (scores.empty()) return keep;
    const double mean = std::accumulate(scores.begin(), scores.end(), 0.0) / static_cast<double>(scores.size());
    // numpy/torch median of an even count averages the middle two; the original used torch.median,
    // which returns the lower one. min(mean, lower median) is what the original compares against.
    std::vector<double> sorted = scores;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[(sorted.size() - 1) / 2];
    const double threshold = std::min(mean, median);
    for (size_t i = 0; i < scores.size(); ++i) {
        if (scores[i] > threshold) keep.push_back(i);
    }
    return keep;
}

std::vector<double> score_weights(const std::vector<double> & scores) {
    const double sum = std::accumulate(scores.begin(), scores.end(), 0.0);
    std::vector<double> w(scores.size(), scores.empty() ? 0.0 : 1.0 / static_cast<double>(scores.size()));
    if (!(sum > 0) || !std::isfinite(sum)) return w;
    for (size_t i = 0; i < scores.size(); ++i) w[i] = scores[i] / sum;
    return w;
}

namespace {

// Token-mean causal-LM loss of each row: [B] float32.
at::Tensor per_row_loss(const at::Tensor & logits, const at::Tensor & labels) {
    const int64_t B = logits.size(0), T = logits.size(1), V = logits.size(2);
    at::Tensor shift_logits = logits.slice(1, 0, T - 1).reshape({-1, V});
    at::Tensor shift_labels = labels.slice(1, 1).reshape({-1});
    at::Tensor token_loss = F::cross_entropy(shift_logits, shift_labels,
                                             F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone))
                                .view({B, T - 1});
    at::Tensor counted = shift_labels.view({B, T - 1}).ne(-100).to(torch::kFloat32);
    return token_loss.sum(1) / counted.sum(1).clamp_min(1.0);
}

}  // namespace

TrainReport fine_tune(CausalLM & model, LoraAdapter & adapter, const std::vector<TrainSample> & samples, int32_t pad_id,
                      const TTTOptions & options, const StepCallback & on_step) {
    options.validate();
    CT3_CHECK(!samples.empty(), ErrorKind::invalid_argument, "fine_tune: no training samples");
    // Ids are checked here, on the host: the model trusts ids and labels already on an accelerator.
    const int64_t vocab = model.vocab_size();
    for (size_t i = 0; i < samples.size(); ++i) {
        CT3_CHECK(samples[i].ids.size() >= 2, ErrorKind::invalid_argument,
                  "training sample {} has {} tokens (at least 2 are needed for a next-token loss)", i,
                  samples[i].ids.size());
        for (int32_t id : samples[i].ids) {
            CT3_CHECK(id >= 0 && id < vocab, ErrorKind::invalid_argument,
                      "training sample {} holds token id {} outside the vocabulary [0, {})", i, id, vocab);
        }
    }
    const auto start = std::chrono::steady_clock::now();
    const c10::Device device = model.device();
    // Dropout masks come from torch's global generator: seed it so a query trains reproducibly.
    torch::manual_seed(options.seed);
    std::mt19937_64 rng(options.seed);

    AdamWConfig adamw;
    adamw.lr = options.learning_rate;
    adamw.beta1 = options.beta1;
    adamw.beta2 = options.beta2;
    adamw.eps = options.eps;
    adamw.weight_decay = options.weight_decay;
    AdamW optimizer(adapter.parameters(), adamw);
    adapter.set_training(true);
    struct EvalOnExit {
        LoraAdapter & a;
        ~EvalOnExit() { a.set_training(false); }
    } eval_on_exit{adapter};

    const size_t n = samples.size(), bs = static_cast<size_t>(options.batch_size);
    const size_t batches_per_epoch = (n + bs - 1) / bs;
    const int total = static_cast<int>(batches_per_epoch) * options.num_epochs;
    TrainReport report;
    std::vector<at::Tensor> step_losses;
    std::vector<size_t> order(n);
    bool stopped = false;
    for (int epoch = 0; epoch < options.num_epochs && !stopped; ++epoch) {
        std::iota(order.begin(), order.end(), size_t{0});
        if (options.shuffle) std::shuffle(order.begin(), order.end(), rng);
        for (size_t b = 0; b < batches_per_epoch; ++b) {
            std::vector<const TrainSample *> rows;
            for (size_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i) rows.push_back(&samples[order[i]]);
            TrainBatch batch = collate(rows, pad_id, options.pad_to_multiple_of);
            report.tokens += batch.attention_mask.sum().item<int64_t>();
            at::Tensor ids = batch.input_ids.to(device), mask = batch.attention_mask.to(device);
            at::Tensor labels = batch.labels.to(device);

            optimizer.zero_grad();
            at::Tensor loss, logged;
            if (options.weighted) {
                // loss_i * w_i * n per row (batch 1: exactly the original), averaged over the batch.
                LMOutput out = model.forward_train(ids, mask, at::Tensor());
                at::Tensor rows_loss = per_row_loss(out.logits, labels);
                std::vector<float> scale;
                for (double w : batch.weights) scale.push_back(static_cast<float>(w * static_cast<double>(n)));
                at::Tensor factors = torch::tensor(scale, torch::kFloat32).to(device);
                loss = (rows_loss * factors).mean();
                logged = rows_loss.mean().detach();
            } else {
                loss = model.forward_train(ids, mask, labels).loss;
                logged = loss.detach();
            }
            loss.backward();
            optimizer.clip_and_step(options.max_grad_norm);
            step_losses.push_back(logged);
            ++report.steps;
            if (on_step && !on_step(report.steps - 1, total, logged.item<double>())) {
                stopped = true;
                break;
            }
        }
    }
    // One device sync for all the logged losses (a .item() per step would stall the GPU queue).
    if (!step_losses.empty()) {
        at::Tensor all = torch::stack(step_losses).to(torch::kCPU, torch::kFloat64);
        report.losses.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
}

}  // namespace ct3::client
