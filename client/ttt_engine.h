// The per-query pipeline of the CT3 client (the original `TTTModel._forward_or_generate`):
//   embed the query -> adapter-cache lookup -> on a miss: reset the adapter to its fixed initial
//   state, retrieve neighbours, (reduce, weight,) fine-tune, insert into the cache -> generate.
// One engine owns one model with one injected LoRA adapter; calls are serialised by the caller
// (one query at a time per model, as the original).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/adapter_cache.h"
#include "client/lora.h"
#include "client/neighbour_source.h"
#include "client/ttt_trainer.h"
#include "models/generate.h"

namespace ct3 {
class CausalLM;
class LlamaForCausalLMImpl;
class Tokenizer;
}  // namespace ct3

namespace ct3::client {

struct EngineOptions {
    bool ttt = false;                 // --ttt
    int num_ttt_samples = 32;         // --num_ttt_samples
    std::string retrieval = "sift";   // --retrieval sift|faiss
    std::optional<int> candidates;    // --candidates (server default 1000)
    std::optional<double> lambda;     // --sift_lambda (server default 0.01)
    bool data_reduction = false;      // --data_reduction
    bool ttt_fallback = false;        // --ttt_fallback: answer without TTT when the server fails
    LoraConfig lora;
    TTTOptions train;
    bool cache = false;               // --local_adapter_managing (or any cache flag)
    AdapterCacheOptions cache_options;

    void validate() const;
};

struct QueryTimings {
    double embed_ms = 0, cache_ms = 0, retrieve_ms = 0, train_ms = 0, generate_ms = 0, total_ms = 0;
};

struct QueryResult {
    GenerateResult generation;
    std::string cache = "off";              // "off" | "hit" | "miss"
    double cache_score = 0;                 // best cosine on a hit
    std::string cache_query;                // the query whose adapter was reused
    std::vector<Neighbour> neighbours;      // as retrieved (before reduction)
    std::vector<size_t> trained_on;         // indices into neighbours actually trained on
    std::vector<double> losses;             // per optimizer step
    int64_t train_tokens = 0;
    bool ttt_applied = false;               // the answer came from a freshly trained or cached adapter
    std::string fallback;                   // why TTT was skipped ("" when it was not)
    QueryTimings timings;
};

class TTTEngine {
public:
    // `model` must be a Llama-family model (LoRA targets its projections). `retrieval` (a ct3-server
    // client or an in-process KB) may be null when options.ttt is false. Injects the adapter, checks
    // the KB when TTT is on.
    TTTEngine(std::shared_ptr<CausalLM> model, std::shared_ptr<const Tokenizer> tokenizer,
              std::shared_ptr<NeighbourSource> retrieval, EngineOptions options);
    ~TTTEngine();

    // Answers one prompt: `query` is the text used for retrieval and the cache key (the original used
    // the whole decoded prompt), `prompt_ids` what the model continues.
    QueryResult answer(const std::string & query, const std::vector<int32_t> & prompt_ids, GenerateParams params,
                       const TokenCallback & on_token = {}, const StepCallback & on_step = {});

    LoraAdapter & adapter() { return *adapter_; }
    AdapterCache * cache() { return cache_.get(); }
    const EngineOptions & options() const { return options_; }
    const KbInfo & kb() const { return kb_; }

private:
    bool train_for(const std::vector<float> & embedding, QueryResult & result, const StepCallback & on_step);

    std::shared_ptr<CausalLM> model_;
    std::shared_ptr<const Tokenizer> tokenizer_;
    std::shared_ptr<NeighbourSource> retrieval_;
    EngineOptions options_;
    std::unique_ptr<LoraAdapter> adapter_;
    std::unique_ptr<AdapterCache> cache_;
    KbInfo kb_;
    int32_t eos_id_ = -1;
};

// The Llama implementation behind a CausalLM, or invalid_argument naming what TTT needs.
LlamaForCausalLMImpl & as_llama(CausalLM & model);

}  // namespace ct3::client
