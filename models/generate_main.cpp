// ct3-generate: text completion (or one chat turn) with a local causal LM, streamed to stdout.
//
//   ct3-generate -m ../shared/models/stories260K/stories260K.bin -p "Once upon a time" -n 64
//   ct3-generate -m models/Llama-3.2-1B-Instruct --chat-template auto -p "What is 2+2?" --temp 0.7 -s 1
//
// The generated text goes to stdout (or one JSON object with --json); logs and timings go to stderr.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "models/chat_template.h"
#include "models/error.h"
#include "models/generate.h"
#include "models/log.h"
#include "models/program.h"
#include "models/model_loader.h"
#include "models/tokenizer.h"

namespace {

struct Options {
    std::string model;
    std::string tokenizer;
    std::string prompt;
    std::string prompt_file;
    std::string system;
    std::string chat_template = "none";
    std::string device = "cpu";
    std::string dtype = "auto";
    bool ignore_eos = false;
    bool echo = false;
    bool json = false;
    std::string log_level;
    ct3::GenerateParams generate;
};

std::string read_text(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in, ct3::ErrorKind::not_found, "cannot open prompt file '{}' (--file)", path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// The tokenizer sits in the model folder, or beside a single-file checkpoint (llama2.c .bin).
std::filesystem::path tokenizer_path(const Options & o) {
    if (!o.tokenizer.empty()) return o.tokenizer;
    const std::filesystem::path model(o.model);
    return std::filesystem::is_directory(model) ? model : model.parent_path();
}

std::string resolve_template(const Options & o, const std::filesystem::path & tok_path) {
    if (o.chat_template != "auto") return o.chat_template;
    const auto dir = std::filesystem::is_directory(tok_path) ? tok_path : tok_path.parent_path();
    const auto config = dir / "tokenizer_config.json";
    if (!std::filesystem::exists(config)) {
        ct3::logger("model")->info("--chat-template auto: no {}, sending the prompt as is", config.string());
        return "none";
    }
    return ct3::detect_chat_template(config);
}

std::vector<int32_t> build_prompt(const Options & o, const ct3::Tokenizer & tokenizer, const std::string & tmpl,
                                  std::string & prompt_text) {
    prompt_text = o.prompt_file.empty() ? o.prompt : read_text(o.prompt_file);
    if (tmpl != "none") {
        std::vector<ct3::ChatMessage> messages;
        if (!o.system.empty()) messages.push_back({"system", o.system});
        messages.push_back({"user", prompt_text});
        prompt_text = ct3::apply_chat_template(tmpl, messages, /*add_generation_prompt=*/true);
    }
    // Chat formats write the BOS token as text; adding another one would shift the model off its format.
    bool add_bos = true;
    if (tokenizer.bos_id() >= 0) {
        const std::string bos = tokenizer.id_to_piece(tokenizer.bos_id());
        if (!bos.empty() && prompt_text.compare(0, bos.size(), bos) == 0) add_bos = false;
    }
    ct3::EncodeOptions encode;
    encode.add_special_tokens = add_bos;
    return tokenizer.encode(prompt_text, encode);
}

int run(Options & o) {
    auto log = ct3::logger("model");
    ct3::SamplingParams & sampling = o.generate.sampling;
    sampling.validate();  // before the (slow) model load
    if (sampling.seed == -1) {
        std::random_device device;
        sampling.seed = static_cast<int64_t>(((static_cast<uint64_t>(device()) << 32) ^ device()) >> 1);
        if (sampling.temperature > 0) log->info("seed {} (pass --seed {} to replay)", sampling.seed, sampling.seed);
    }
    o.generate.stop_at_eos = !o.ignore_eos;

    CT3_CHECK(std::filesystem::exists(o.model), ct3::ErrorKind::not_found,
              "model '{}' does not exist (--model: a Hugging Face model folder or a llama2.c .bin file)", o.model);
    const auto tok_path = tokenizer_path(o);
    const std::string tmpl = resolve_template(o, tok_path);
    if (tmpl != "none") {
        // Fail on an unknown name now rather than after loading the model.
        ct3::apply_chat_template(tmpl, {{"user", ""}}, true);
    }
    std::unique_ptr<ct3::Tokenizer> tokenizer = ct3::load_tokenizer(tok_path);
    ct3::LoadOptions load;
    load.device = o.device;
    load.dtype = o.dtype;
    std::shared_ptr<ct3::CausalLM> model = ct3::load_causal_lm(o.model, load);

    std::string prompt_text;
    const std::vector<int32_t> prompt = build_prompt(o, *tokenizer, tmpl, prompt_text);
    log->info("prompt: {} tokens (chat template: {})", prompt.size(), tmpl);
    if (o.echo && !o.json) {
        std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
        std::fflush(stdout);
    }

    ct3::TokenCallback stream;
    if (!o.json) {
        stream = [](const std::string & piece, int32_t) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
            return true;
        };
    }
    const ct3::GenerateResult result = ct3::generate(*model, *tokenizer, prompt, o.generate, stream);

    if (o.json) {
        nlohmann::json out = {
            {"text", result.text},
            {"ids", result.ids},
            {"finish_reason", result.finish_reason},
            {"n_prompt_tokens", result.n_prompt_tokens},
            {"n_generated_tokens", result.ids.size()},
            {"prefill_ms", result.prefill_ms},
            {"decode_ms", result.decode_ms},
            {"seed", sampling.seed},
        };
        // Replace, not throw, if a tokenizer produced invalid UTF-8.
        std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
        std::cout << "\n";
    }
    const double prefill_tps = result.prefill_ms > 0 ? result.n_prompt_tokens * 1000.0 / result.prefill_ms : 0.0;
    const double decode_tps = result.decode_ms > 0 ? result.ids.size() * 1000.0 / result.decode_ms : 0.0;
    log->info("prefill {} tokens in {:.1f} ms ({:.1f} tok/s); generated {} tokens in {:.1f} ms ({:.1f} tok/s); "
              "finish: {}",
              result.n_prompt_tokens, result.prefill_ms, prefill_tps, result.ids.size(), result.decode_ms, decode_tps,
              result.finish_reason);
    return 0;
}

}  // namespace

int main(int argc, char ** argv) {
    Options o;
    ct3::SamplingParams & s = o.generate.sampling;
    CLI::App app{"ct3-generate: complete a prompt (or answer one chat turn) with a causal LM"};
    app.add_option("-m,--model", o.model, "Hugging Face model folder or llama2.c .bin checkpoint")->required();
    app.add_option("--tokenizer", o.tokenizer, "Tokenizer file or folder (default: the model folder)");
    app.add_option("-p,--prompt", o.prompt, "Prompt text (default: empty, i.e. start from BOS)");
    app.add_option("-f,--file", o.prompt_file, "Read the prompt from this file")->excludes("--prompt");
    app.add_option("-n,--n-predict", o.generate.max_new_tokens, "Maximum number of new tokens")
        ->capture_default_str();
    app.add_option("--temp", s.temperature, "Temperature; 0 = greedy")->capture_default_str();
    app.add_option("--top-k", s.top_k, "Top-k sampling; 0 = off")->capture_default_str();
    app.add_option("--top-p", s.top_p, "Top-p (nucleus) sampling; 1 = off")->capture_default_str();
    app.add_option("--min-p", s.min_p, "Min-p sampling; 0 = off")->capture_default_str();
    app.add_option("--repeat-penalty", s.repetition_penalty, "Repetition penalty (HF semantics); 1 = off")
        ->capture_default_str();
    app.add_option("-s,--seed", s.seed, "Random seed; -1 = random")->capture_default_str();
    app.add_option("--stop", o.generate.stop_strings, "Stop when the output contains this string (repeatable)");
    app.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after end-of-sequence tokens");
    app.add_option("--chat-template", o.chat_template,
                   "none | auto (from tokenizer_config.json) | llama3 | llama2 | chatml | qwen2 | plain")
        ->capture_default_str();
    app.add_option("--system", o.system, "System message (with --chat-template)");
    app.add_option("--device", o.device, "cpu, cuda, cuda:N")->capture_default_str();
    app.add_option("--dtype", o.dtype, "auto | float32 | bfloat16 | float16")->capture_default_str();
    app.add_flag("--echo", o.echo, "Print the (templated) prompt before the generated text");
    app.add_flag("--json", o.json, "Print one JSON object with text, ids and timings instead of streaming");
    ct3::add_log_flags(app, o.log_level);
    CLI11_PARSE(app, argc, argv);

    return ct3::run_program("ct3-generate", [&] {
        ct3::log_init(o.log_level);
        return run(o);
    });
}
