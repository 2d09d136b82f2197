#include "client/ttt_engine.h"

#include <chrono>

#include <torch/torch.h>

#include "client/peft_adapter.h"
#include "models/error.h"
#include "models/llama.h"
#include "models/log.h"
#include "models/tokenizer.h"

namespace ct3::client {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Errors of the retrieval service that --ttt_fallback turns into "answer without TTT".
bool is_service_error(const Error & e) {
    return e.kind() == ErrorKind::unavailable || e.kind() == ErrorKind::bad_format;
}

}  // namespace

LlamaForCausalLMImpl & as_llama(CausalLM & model) {
    auto * llama = dynamic_cast<LlamaForCausalLMImpl *>(&model);
    CT3_CHECK(llama != nullptr, ErrorKind::unsupported,
              "test-time training needs a Llama-family model (LoRA targets its q/k/v/o and MLP projections)");
    return *llama;
}

void EngineOptions::validate() const {
    CT3_CHECK(num_ttt_samples >= 1, ErrorKind::invalid_argument, "--num_ttt_samples must be >= 1 (got {})",
              num_ttt_samples);
    CT3_CHECK(retrieval == "sift" || retrieval == "faiss", ErrorKind::invalid_argument,
              "--retrieval must be sift or faiss (got '{}')", retrieval);
    lora.validate();
    train.validate();
}

TTTEngine::TTTEngine(std::shared_ptr<CausalLM> model, std::shared_ptr<const Tokenizer> tokenizer,
                     std::shared_ptr<NeighbourSource> retrieval, EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), retrieval_(std::move(retrieval)),
      options_(std::move(options)) {
    options_.validate();
    auto log = logger("client");
    adapter_ = LoraAdapter::inject(as_llama(*model_), options_.lora);
    adapter_->set_enabled(options_.ttt);
    eos_id_ = tokenizer_->eos_id();
    if (eos_id_ < 0 && !model_->eos_token_ids().empty()) eos_id_ = model_->eos_token_ids().front();
    log->info("LoRA r={} alpha={} (scaling {:.4g}) on {} modules: {:.2f}M trainable parameters", options_.lora.r,
              options_.lora.alpha, options_.lora.scaling(), adapter_->module_names().size(),
              adapter_->num_parameters() / 1e6);
    if (!options_.ttt) return;
    CT3_CHECK(retrieval_ != nullptr, ErrorKind::invalid_argument, "--ttt needs a retrieval server (--server) or a KB folder (--knowledge_base_path)");
    try {
        kb_ = retrieval_->kb_info();
        log->info("retrieval from {}: {} entries, embedder {} ({} dims)", retrieval_->describe(), kb_.count,
                  kb_.embedder, kb_.dim);
    } catch (const Error & e) {
        if (!options_.ttt_fallback || !is_service_error(e)) throw;
        log->warn("retrieval server unavailable ({}); answers fall back to no TTT until it responds", e.what());
    }
    if (options_.cache) {
        AdapterCacheOptions cache_options = options_.cache_options;
        cache_options.adapter_config_json = peft_adapter_config(options_.lora, "").dump();
        cache_options.device = model_->device().str();
        if (cache_options.embedder.empty()) cache_options.embedder = kb_.embedder;
        if (cache_options.embedding_dim == 0 && kb_.dim > 0) cache_options.embedding_dim = static_cast<size_t>(kb_.dim);
        cache_ = std::make_unique<AdapterCache>(cache_options);
    }
}

TTTEngine::~TTTEngine() = default;

bool TTTEngine::train_for(const std::vector<float> & embedding, QueryResult & result, const StepCallback & on_step) {
    auto log = logger("client");
    auto t0 = Clock::now();
    SearchRequest request;
    request.embedding = embedding;  // embedded once, for the cache key and the search
    request.k = options_.num_ttt_samples;
    request.mode = options_.retrieval;
    request.candidates = options_.candidates;
    request.lambda = options_.lambda;
    result.neighbours = retrieval_->search(request);
    result.timings.retrieve_ms = ms_since(t0);

    std::vector<double> scores;
    for (const Neighbour & n : result.neighbours) scores.push_back(n.score);
    std::vector<size_t> keep(scores.size());
    for (size_t i = 0; i < keep.size(); ++i) keep[i] = i;
    if (options_.data_reduction) keep = reduce_by_score(scores);

    std::vector<double> kept_scores;
    for (size_t i : keep) kept_scores.push_back(scores[i]);
    const std::vector<double> weights = score_weights(kept_scores);
    std::vector<TrainSample> samples;
    for (size_t j = 0; j < keep.size(); ++j) {
        TrainSample s;
        s.ids = tokenize_training_text(*tokenizer_, result.neighbours[keep[j]].text, options_.train.max_length, eos_id_);
        if (s.ids.size() < 2) continue;  // nothing to predict
        s.weight = options_.train.weighted ? weights[j] : 1.0;
        samples.push_back(std::move(s));
        result.trained_on.push_back(keep[j]);
    }
    if (samples.empty()) {
        result.fallback = result.neighbours.empty() ? "the server returned no neighbours"
                                                    : "no neighbours left to train on after data reduction";
        log->warn("{}: answering with the base model", result.fallback);
        return false;
    }
    t0 = Clock::now();
    TrainReport report = fine_tune(*model_, *adapter_, samples, eos_id_, options_.train, on_step);
    result.timings.train_ms = ms_since(t0);
    result.losses = report.losses;
    result.train_tokens = report.tokens;
    log->info("TTT: {} steps on {} neighbours ({} tokens) in {:.0f} ms, loss {:.4f} -> {:.4f}", report.steps,
              samples.size(), report.tokens, result.timings.train_ms, report.losses.front(), report.losses.back());
    return true;
}

QueryResult TTTEngine::answer(const std::string & query, const std::vector<int32_t> & prompt_ids,
                              GenerateParams params, const TokenCallback & on_token, const StepCallback & on_step) {
    const auto start = Clock::now();
    QueryResult result;
    auto log = logger("client");
    if (options_.ttt) {
        try {
            auto t0 = Clock::now();
            const std::vector<float> embedding = retrieval_->embed(query);
            result.timings.embed_ms = ms_since(t0);
            const at::Tensor key = torch::tensor(embedding, torch::kFloat32);
            std::optional<CacheHit> hit;
            if (cache_) {
                t0 = Clock::now();
                hit = cache_->lookup(key);
                result.timings.cache_ms = ms_since(t0);
                result.cache = hit ? "hit" : "miss";
            }
            if (hit) {
                adapter_->use(*hit->adapter, "adapter cache");
                result.cache_score = hit->score;
                result.cache_query = hit->query;
                result.ttt_applied = true;
                log->info("adapter cache hit (cosine {:.3f} with \"{:.60}\")", hit->score, hit->query);
            } else {
                adapter_->reset();  // every query trains from the same initial state
                result.ttt_applied = train_for(embedding, result, on_step);
                if (result.ttt_applied && cache_) {
                    if (auto evicted = cache_->insert(query, key, std::make_shared<const AdapterTensors>(adapter_->state()))) {
                        log->debug("adapter cache evicted \"{:.60}\"", *evicted);
                    }
                }
            }
        } catch (const Error & e) {
            if (!options_.ttt_fallback || !is_service_error(e)) throw;
            result.fallback = fmt::format("retrieval failed: {}", e.what());
            log->warn("{}; answering without TTT (--ttt_fallback)", result.fallback);
            adapter_->reset();
            result.ttt_applied = false;
        }
    }
    auto t0 = Clock::now();
    result.generation = generate(*model_, *tokenizer_, prompt_ids, params, on_token);
    result.timings.generate_ms = ms_since(t0);
    result.timings.total_ms = ms_since(start);
    return result;
}

}  // namespace ct3::client
