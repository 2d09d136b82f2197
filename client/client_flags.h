// The command-line surface shared by the programs that run test-time training (ct3-client,
// ct3-eval): model, server and TTT flags with the original CT3 names and defaults, and loading.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "client/retrieval_client.h"
#include "client/ttt_engine.h"
#include "models/generate.h"

namespace CLI {
class App;
}
namespace ct3 {
class CausalLM;
class Tokenizer;
}  // namespace ct3

namespace ct3::client {

struct ClientSetup {
    std::string model_path;  // empty = default_model_path()
    std::string tokenizer;   // empty = beside the model
    std::string device = "cpu";
    std::string dtype = "auto";
    std::string api_key_file;
    std::string target_modules;  // space/comma separated; empty = LoraConfig's default
    std::string cache_strategy = "lfu";
    std::string kb_path;     // --knowledge_base_path: retrieve in-process instead of from --server
    RetrievalClientOptions server;
    EngineOptions engine;
};

void add_model_flags(CLI::App & app, ClientSetup & setup);
void add_server_flags(CLI::App & app, ClientSetup & setup);
void add_ttt_flags(CLI::App & app, ClientSetup & setup);
// -n --temp --top-k --top-p --min-p --repeat-penalty -s --stop --ignore-eos (greedy by default, as the original).
void add_sampling_flags(CLI::App & app, GenerateParams & params, bool & ignore_eos);

// After parsing: default model, target modules, cache strategy, API key file; validates the engine
// options (before any slow load).
void finalize(ClientSetup & setup);

// The project's default model: $CT3_MODEL, else the shipped models/ct3-tiny (under the working
// directory, else the source tree), else the shared folder's stories260K ($CT3_SHARED_DIR, ../shared,
// or the source tree's ../shared).
std::filesystem::path default_model_path();

// The neighbour source for --ttt: the KB folder in-process when --knowledge_base_path is given, else
// the ct3-server at --server; null without --ttt.
std::shared_ptr<NeighbourSource> make_neighbour_source(const ClientSetup & setup);

struct LoadedModel {
    std::shared_ptr<Tokenizer> tokenizer;
    std::shared_ptr<CausalLM> model;
};
LoadedModel load_model(const ClientSetup & setup);

}  // namespace ct3::client
