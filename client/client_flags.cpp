#include "client/client_flags.h"


#include <CLI/CLI.hpp>

#include "client/local_retrieval.h"
#include "kb/kb_files.h"
#include "models/causal_lm.h"
#include "models/error.h"
#include "models/model_loader.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;

namespace ct3::client {

namespace {

std::vector<std::string> split_words(const std::string & s) {
    std::vector<std::string> out;
    std::string word;
    for (char c : s + " ") {
        if (c == ' ' || c == ',') {
            if (!word.empty()) out.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    return out;
}

}  // namespace

fs::path default_model_path() {
    // 1. $CT3_MODEL; 2. the shipped ct3-tiny (under the working directory, else the source tree);
    // 3. the shared stories260K (kept as the fallback of a checkout without models/ct3-tiny).
    if (const char * env = std::getenv("CT3_MODEL"); env != nullptr && *env != '\0') return env;
    std::error_code ec;
    const fs::path tiny = "models/ct3-tiny";
    if (fs::exists(tiny / "config.json", ec)) return fs::absolute(tiny, ec).lexically_normal();
#ifdef CT3_CLIENT_SOURCE_DIR
    if (fs::exists(fs::path(CT3_CLIENT_SOURCE_DIR) / tiny / "config.json", ec)) {
        return (fs::path(CT3_CLIENT_SOURCE_DIR) / tiny).lexically_normal();
    }
#endif
    const fs::path rel = "models/stories260K/stories260K.bin";
    if (const char * env = std::getenv("CT3_SHARED_DIR"); env != nullptr && *env != '\0') return fs::path(env) / rel;
    const fs::path local = fs::absolute("../shared", ec) / rel;
    if (!ec && fs::exists(local, ec)) return local.lexically_normal();
#ifdef CT3_CLIENT_SOURCE_SHARED
    if (fs::exists(fs::path(CT3_CLIENT_SOURCE_SHARED) / rel, ec)) {
        return (fs::path(CT3_CLIENT_SOURCE_SHARED) / rel).lexically_normal();
    }
#endif
    return local;
}

void add_model_flags(CLI::App & app, ClientSetup & s) {
    app.add_option("-m,--model_path", s.model_path,
                   "Hugging Face model folder or llama2.c .bin (default: $CT3_MODEL, else the shipped models/ct3-tiny)");
    app.add_option("--tokenizer", s.tokenizer, "Tokenizer file or folder (default: beside the model)");
    app.add_option("--device", s.device, "cpu, cuda, cuda:N")->capture_default_str();
    app.add_option("--dtype", s.dtype, "auto | float32 | bfloat16 | float16")->capture_default_str();
}

void add_server_flags(CLI::App & app, ClientSetup & s) {
    app.add_option("--server", s.server.server_url, "ct3-server URL")->capture_default_str();
    app.add_option("--knowledge_base_path", s.kb_path, "Retrieve from this KB folder in-process instead of --server");
    app.add_option("--api_key_file", s.api_key_file, "File holding the server's API key");
    app.add_option("--server_timeout", s.server.read_timeout_s, "Seconds to wait for a server reply")
        ->capture_default_str();
    app.add_option("--server_retries", s.server.max_attempts, "Attempts per server request (transport errors, 429, 5xx)")
        ->capture_default_str();
}

void add_ttt_flags(CLI::App & app, ClientSetup & s) {
    EngineOptions & e = s.engine;
    app.add_flag("--ttt", e.ttt, "Train a LoRA adapter on the question's neighbours before answering");
    app.add_flag("--ttt_fallback", e.ttt_fallback, "If the server fails, answer without TTT (and say so) instead of failing");
    app.add_option("--num_ttt_samples", e.num_ttt_samples, "Neighbours to train on")->capture_default_str();
    app.add_option("--retrieval", e.retrieval, "sift | faiss")->capture_default_str();
    app.add_option("--candidates", e.candidates, "SIFT candidate pool (server default 1000)");
    app.add_option("--sift_lambda", e.lambda, "SIFT regularisation (server default 0.01)");
    app.add_flag("--data_reduction", e.data_reduction, "Train only on neighbours scoring above min(mean, median)");
    app.add_flag("--weighted_sample_training", e.train.weighted, "Weight each sample's loss by its score share x n");
    app.add_flag("--shuffle_ttt_samples", e.train.shuffle, "Shuffle the samples each epoch (seeded by --ttt_seed)");
    app.add_option("--ttt_seed", e.train.seed, "Seed of shuffling and dropout")->capture_default_str();
    app.add_option("--num_epochs", e.train.num_epochs, "Epochs over the neighbours")->capture_default_str();
    app.add_option("--learning_rate", e.train.learning_rate, "AdamW learning rate")->capture_default_str();
    app.add_option("--weight_decay", e.train.weight_decay, "AdamW weight decay")->capture_default_str();
    app.add_option("--batch_size", e.train.batch_size, "Samples per step (> 1 pads and masks)")->capture_default_str();
    app.add_option("--max_length", e.train.max_length, "Tokens per training sample (truncation)")->capture_default_str();
    app.add_option("--max_grad_norm", e.train.max_grad_norm, "Gradient-norm clip; 0 = off")->capture_default_str();
    app.add_option("--lora_rank", e.lora.r, "LoRA rank")->capture_default_str();
    app.add_option("--lora_alpha", e.lora.alpha, "LoRA alpha (scaling alpha/r)")->capture_default_str();
    app.add_option("--lora_dropout", e.lora.dropout, "LoRA dropout (training only)")->capture_default_str();
    app.add_flag("--use_rslora", e.lora.use_rslora, "rsLoRA scaling alpha/sqrt(r)");
    app.add_option("--target_modules", s.target_modules,
                   "Projections to adapt (default q_proj k_proj v_proj up_proj down_proj)");
    app.add_option("--lora_seed", e.lora.seed, "Seed of the adapter's fixed initial state")->capture_default_str();
    app.add_flag("--local_adapter_managing", e.cache, "Reuse trained adapters for similar questions");
    app.add_option("--local_adapter_manager_size", e.cache_options.capacity, "Adapters kept")->capture_default_str();
    app.add_option("--local_adapter_manager_threshold", e.cache_options.threshold, "Cosine needed for a cache hit")
        ->capture_default_str();
    app.add_option("--local_adapter_manager_strategy", s.cache_strategy, "lfu | random | lru")->capture_default_str();
    app.add_option("--adapter_cache_dir", e.cache_options.persist_dir, "Keep the adapter cache in this folder across runs");
}

void add_sampling_flags(CLI::App & app, GenerateParams & g, bool & ignore_eos) {
    SamplingParams & s = g.sampling;
    s.temperature = 0;  // greedy, as the original client and harnesses
    app.add_option("-n,--n-predict", g.max_new_tokens, "Maximum new tokens")->capture_default_str();
    app.add_option("--temp", s.temperature, "Temperature; 0 = greedy")->capture_default_str();
    app.add_option("--top-k", s.top_k, "Top-k sampling; 0 = off")->capture_default_str();
    app.add_option("--top-p", s.top_p, "Top-p sampling; 1 = off")->capture_default_str();
    app.add_option("--min-p", s.min_p, "Min-p sampling; 0 = off")->capture_default_str();
    app.add_option("--repeat-penalty", s.repetition_penalty, "Repetition penalty; 1 = off")->capture_default_str();
    app.add_option("-s,--seed", s.seed, "Sampling seed; -1 = random")->capture_default_str();
    app.add_option("--stop", g.stop_strings, "Stop when the answer contains this string (repeatable)");
    app.add_flag("--ignore-eos", ignore_eos, "Keep generating after end-of-sequence tokens");
}

void finalize(ClientSetup & s) {
    if (s.model_path.empty()) s.model_path = default_model_path().string();
    if (!s.target_modules.empty()) s.engine.lora.target_modules = split_words(s.target_modules);
    s.engine.cache_options.strategy = parse_cache_strategy(s.cache_strategy);
    if (!s.engine.cache_options.persist_dir.empty()) s.engine.cache = true;
    if (!s.api_key_file.empty()) {
        std::string key = kb::read_whole_file(s.api_key_file, "--api_key_file");
        while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
        s.server.api_key = key;
    }
    s.engine.validate();
}

std::shared_ptr<NeighbourSource> make_neighbour_source(const ClientSetup & s) {
    if (!s.engine.ttt) return nullptr;
    if (!s.kb_path.empty()) return std::make_shared<LocalRetrieval>(s.kb_path, s.device);
    return std::make_shared<RetrievalClient>(s.server);
}

LoadedModel load_model(const ClientSetup & s) {
    CT3_CHECK(fs::exists(s.model_path), ErrorKind::not_found,
              "model '{}' does not exist (--model_path: a Hugging Face model folder or a llama2.c .bin file)",
              s.model_path);
    const fs::path model(s.model_path);
    LoadedModel out;
    out.tokenizer = load_tokenizer(s.tokenizer.empty() ? (fs::is_directory(model) ? model : model.parent_path())
                                                       : fs::path(s.tokenizer));
    LoadOptions load;
    load.device = s.device;
    load.dtype = s.dtype;
    out.model = load_causal_lm(model, load);
    return out;
}

}  // namespace ct3::client
