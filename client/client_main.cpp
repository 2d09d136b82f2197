// ct3-client: answers questions with a local causal LM that first trains a LoRA adapter on the
// question's neighbours from a ct3-server (test-time training, CT3).
//
//   ct3-client --ttt -p "Natalia sold clips to 48 of her friends in April..."      (project defaults)
//   ct3-client --model_path DIR --server http://127.0.0.1:8000 --ttt -p "question" --json
//   ct3-client --ttt --interactive                     one question per line
//   ct3-client --ttt --batch < questions.jsonl         {"id": ..., "prompt": ...} per line -> JSONL
//
// Answers go to stdout (streamed, or JSON with --json / --batch); logs and progress go to stderr.
#include <cstdio>
#include <iostream>
#include <random>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "client/client_flags.h"
#include "client/peft_adapter.h"
#include "kb/kb_files.h"
#include "client/ttt_engine.h"
#include "models/error.h"
#include "models/log.h"
#include "models/model_loader.h"
#include "models/program.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;
using namespace ct3::client;

namespace {

struct Options {
    ClientSetup setup;
    std::string prompt;
    std::string prompt_file;
    bool interactive = false;
    bool batch = false;
    bool json = false;
    bool echo = false;
    bool ignore_eos = false;
    std::string adapter;       // --adapter: a PEFT adapter to answer with (no TTT)
    std::string save_adapter;  // --save_adapter: the adapter of the last query
    std::string log_level;
    ct3::GenerateParams generate;
};

nlohmann::json to_json(const QueryResult & r, bool with_texts) {
    nlohmann::json neighbours = nlohmann::json::array();
    for (const Neighbour & n : r.neighbours) {
        nlohmann::json j = {{"rank", n.rank},         {"id", n.id},       {"dataset", n.dataset},
                            {"row", n.row},           {"score", n.score}, {"similarity", n.similarity}};
        if (with_texts) j["text"] = n.text;
        neighbours.push_back(j);
    }
    const auto & t = r.timings;
    return {
        {"answer", r.generation.text},
        {"finish_reason", r.generation.finish_reason},
        {"ttt", r.ttt_applied},
        {"fallback", r.fallback.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.fallback)},
        {"cache", {{"status", r.cache}, {"score", r.cache_score}, {"query", r.cache_query}}},
        {"neighbours", neighbours},
        {"trained_on", r.trained_on},
        {"losses", r.losses},
        {"train_tokens", r.train_tokens},
        {"n_prompt_tokens", r.generation.n_prompt_tokens},
        {"n_generated_tokens", r.generation.ids.size()},
        {"timings_ms",
         {{"embed", t.embed_ms}, {"cache", t.cache_ms}, {"retrieve", t.retrieve_ms}, {"train", t.train_ms},
          {"generate", t.generate_ms}, {"total", t.total_ms}}},
    };
}

void print_json(const nlohmann::json & j) {
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
}

class Session {
public:
    explicit Session(Options & o) : o_(o) {}

    void load() {
        auto log = ct3::logger("client");
        ClientSetup & setup = o_.setup;
        LoadedModel loaded = load_model(setup);
        tokenizer_ = loaded.tokenizer;
        model_ = loaded.model;
        std::shared_ptr<NeighbourSource> retrieval = make_neighbour_source(setup);
        if (!o_.adapter.empty()) {
            CT3_CHECK(!setup.engine.ttt, ct3::ErrorKind::invalid_argument,
                      "--adapter answers with a saved adapter; it cannot be combined with --ttt");
            setup.engine.lora = read_peft_adapter_config(o_.adapter);
        }
        engine_ = std::make_unique<TTTEngine>(model_, tokenizer_, retrieval, setup.engine);
        if (!o_.adapter.empty()) {
            engine_->adapter().load(read_peft_tensors(o_.adapter), o_.adapter);
            engine_->adapter().set_enabled(true);
            log->info("answering with adapter {}", o_.adapter);
        }
    }

    QueryResult ask(const std::string & question, bool stream) {
        ct3::EncodeOptions encode;
        encode.add_special_tokens = true;  // raw prompt + BOS, as the original client (no chat template)
        const std::vector<int32_t> ids = tokenizer_->encode(question, encode);
        ct3::TokenCallback on_token;
        if (stream) {
            if (o_.echo) std::cout << question << std::flush;
            on_token = [](const std::string & piece, int32_t) {
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
                return true;
            };
        }
        StepCallback on_step;
        if (ct3::stderr_is_tty()) {
            on_step = [](int step, int total, double loss) {
                std::fprintf(stderr, "\rTTT step %d/%d  loss %.4f%s", step + 1, total, loss, step + 1 == total ? "\n" : "");
                return true;
            };
        }
        QueryResult r = engine_->answer(question, ids, o_.generate, on_token, on_step);
        if (stream) std::cout << "\n" << std::flush;
        const auto & t = r.timings;
        ct3::logger("client")->info(
            "{}{}: embed {:.0f} ms, retrieve {:.0f} ms, train {:.0f} ms ({} steps), generate {:.0f} ms ({} tokens), "
            "total {:.0f} ms",
            r.ttt_applied ? "TTT" : "no TTT", r.cache == "off" ? "" : " (cache " + r.cache + ")", t.embed_ms,
            t.retrieve_ms, t.train_ms, r.losses.size(), t.generate_ms, r.generation.ids.size(), t.total_ms);
        if (!o_.save_adapter.empty() && (r.ttt_applied || !o_.adapter.empty())) {
            save_peft_adapter(o_.save_adapter, engine_->adapter(), o_.setup.model_path);
        }
        return r;
    }

    int run() {
        if (o_.batch) return run_batch();
        if (o_.interactive) {
            std::string line;
            while (true) {
                if (isatty(STDIN_FILENO)) std::fprintf(stderr, "> ");
                if (!std::getline(std::cin, line)) break;
                if (line.empty()) continue;
                QueryResult r = ask(line, !o_.json);
                if (o_.json) print_json(to_json(r, true));
            }
            return 0;
        }
        const std::string question = o_.prompt_file.empty() ? o_.prompt : ct3::kb::read_whole_file(o_.prompt_file, "--prompt-file");
        QueryResult r = ask(question, !o_.json);
        if (o_.json) print_json(to_json(r, true));
        return 0;
    }

private:
    // One JSON object per input line: {"prompt": "...", "id": any} (or a bare JSON string). A bad line
    // gets an {"id", "error"} line and the batch goes on; the exit status is 1 if any line failed.
    int run_batch() {
        std::string line;
        int line_no = 0, failed = 0;
        while (std::getline(std::cin, line)) {
            ++line_no;
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            nlohmann::json id = line_no;
            try {
                nlohmann::json in = nlohmann::json::parse(line);
                std::string prompt;
                if (in.is_string()) {
                    prompt = in.get<std::string>();
                } else {
                    CT3_CHECK(in.is_object() && in.contains("prompt") && in["prompt"].is_string(),
                              ct3::ErrorKind::invalid_argument,
                              "stdin line {}: expected {{\"prompt\": \"...\"}} or a JSON string", line_no);
                    if (in.contains("id")) id = in["id"];
                    prompt = in["prompt"].get<std::string>();
                }
                nlohmann::json out = to_json(ask(prompt, false), false);
                out["id"] = id;
                print_json(out);
            } catch (const std::exception & e) {
                ++failed;
                ct3::logger("client")->error("stdin line {}: {}", line_no, e.what());
                print_json({{"id", id}, {"error", e.what()}});
            }
        }
        return failed == 0 ? 0 : 1;
    }

    Options & o_;
    std::shared_ptr<ct3::Tokenizer> tokenizer_;
    std::shared_ptr<ct3::CausalLM> model_;
    std::unique_ptr<TTTEngine> engine_;
};

int run(Options & o) {
    ct3::SamplingParams & sampling = o.generate.sampling;
    sampling.validate();
    if (sampling.seed == -1) {
        std::random_device device;
        sampling.seed = static_cast<int64_t>(((static_cast<uint64_t>(device()) << 32) ^ device()) >> 1);
    }
    o.generate.stop_at_eos = !o.ignore_eos;
    const bool have_prompt = !o.prompt.empty() || !o.prompt_file.empty();
    if (!have_prompt && !o.interactive && !o.batch) {
        CT3_CHECK(!isatty(STDIN_FILENO), ct3::ErrorKind::invalid_argument,
                  "no question: pass -p \"...\", --prompt-file FILE, --interactive, or JSONL on stdin (--batch)");
        o.batch = true;
    }
    finalize(o.setup);  // validates before the (slow) model load
    Session session(o);
    session.load();
    return session.run();
}

}  // namespace

int main(int argc, char ** argv) {
    Options o;
    CLI::App app{"ct3-client: answer a question with test-time training on its neighbours from a ct3-server"};
    add_model_flags(app, o.setup);
    add_server_flags(app, o.setup);
    add_ttt_flags(app, o.setup);
    app.add_option("-p,--prompt", o.prompt, "The question");
    app.add_option("-f,--prompt-file", o.prompt_file, "Read the question from this file")->excludes("--prompt");
    app.add_flag("-i,--interactive", o.interactive, "Answer one question per stdin line");
    app.add_flag("--batch", o.batch, "Read JSONL {\"id\", \"prompt\"} from stdin, write one JSON answer per line");
    app.add_flag("--json", o.json, "Print answer, neighbours, losses, timings and cache status as JSON");
    app.add_flag("--echo", o.echo, "Print the question before the streamed answer");
    app.add_option("--adapter", o.adapter, "Answer with this PEFT adapter folder (no TTT)");
    app.add_option("--save_adapter", o.save_adapter, "Save the adapter used for the (last) answer here, PEFT format");
    add_sampling_flags(app, o.generate, o.ignore_eos);
    ct3::add_log_flags(app, o.log_level);
    CLI11_PARSE(app, argc, argv);

    return ct3::run_program("ct3-client", [&] {
        ct3::log_init(o.log_level);
        return run(o);
    });
}
