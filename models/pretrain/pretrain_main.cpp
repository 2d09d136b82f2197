// ct3-pretrain: trains a causal LM from scratch (a Llama-architecture Transformer, or with --backbone
// ttt-linear | ttt-mlp a TTT model of the same sizes), in five resumable stages that
// each read the previous one's output (the whole recipe of the shipped ct3-tiny model is
// scripts/train_ct3_tiny.sh):
//
//   ct3-pretrain corpus    --out data/corpus                  train splits + Python stdlib/docs, decontaminated
//   ct3-pretrain tokenizer --corpus data/corpus --out data/tok --vocab_size 8192
//   ct3-pretrain tokenize  --corpus data/corpus --tokenizer data/tok.model --out data/tokens
//   ct3-pretrain train     --data data/tokens --run runs/tiny --preset ct3-tiny --max_steps 2000
//   ct3-pretrain export    --run runs/tiny --tokenizer data/tok.model --out models/ct3-tiny
//
// Data parallel over the GPUs of one host (NCCL, one process per GPU; gloo for CPU processes):
//
//   ct3-pretrain train --nproc 8 --data data/tokens --run runs/tiny --preset ct3-tiny ...
//
// re-executes the program 8 times with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set (a
// free loopback port); rank r trains on cuda:r (with --device auto or cuda). The global batch is
// micro_batch * grad_accum * nproc, so halve --micro_batch or --grad_accum when doubling --nproc to
// keep a single-GPU run's batch (same results up to float summation order). torchrun works too:
//
//   torchrun --standalone --nproc_per_node 8 $(which ct3-pretrain) train --data ... --run ...
//
// Only rank 0 writes the run folder and prints the summary; a resume needs the same process count.
// CT3_DIST_TIMEOUT_S (default 300, or --dist_timeout) bounds rendezvous and collectives.
//
// Logs go to stderr, the final summary (JSON) to stdout.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"
#include "models/program.h"
#include "models/pretrain/corpus.h"
#include "models/pretrain/distributed.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/model_presets.h"
#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/token_shards.h"
#include "models/pretrain/trainer.h"
#include "models/sentencepiece_trainer.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;
using ct3::ErrorKind;

namespace {

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const auto s = static_cast<int64_t>(seconds);
    if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
    if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}s", s);
}

// Progress of training: a line redrawn in place on a terminal, else one log line per logged step.
class TrainProgress {
public:
    explicit TrainProgress(bool tty) : tty_(tty) {}
    ~TrainProgress() {
        if (drawn_) std::fputc('\n', stderr);
    }
    void operator()(const ct3::pretrain::StepReport & r) {
        auto log = ct3::logger("pretrain");
        if (r.eval) {
            if (drawn_) std::fputc('\n', stderr), drawn_ = false;
            log->info("step {}/{}: held-out loss {:.4f}, {:.4f} bits/byte", r.step, r.max_steps, r.loss,
                      r.bits_per_byte);
            return;
        }
        const double eta = r.tokens_per_s > 0 && r.step > 0 ? r.elapsed_s / r.step * (r.max_steps - r.step) : NAN;
        const std::string line = fmt::format("step {}/{} loss {:.4f} lr {:.2e} {:.0f} tok/s elapsed {} eta {}", r.step,
                                             r.max_steps, r.loss, r.lr, r.tokens_per_s, format_duration(r.elapsed_s),
                                             format_duration(eta));
        if (tty_) {
            std::fprintf(stderr, "\r%-100s", line.c_str());
            std::fflush(stderr);
            drawn_ = true;
        } else {
            log->info("{}", line);
        }
    }

private:
    bool tty_, drawn_ = false;
};

}  // namespace

int main(int argc, char ** argv) {
    CLI::App app{"ct3-pretrain: build a corpus, train a tokenizer, tokenize, pretrain and export a Llama-architecture LM"};
    app.require_subcommand(1);
    app.fallthrough();  // --log-level also after the subcommand
    std::string log_level;
    ct3::add_log_flags(app, log_level);

    // corpus
    auto * corpus_cmd = app.add_subcommand("corpus", "Build the decontaminated pretraining corpus (JSONL)");
    ct3::pretrain::CorpusOptions corpus;
    fs::path corpus_out, python_stdlib = "/usr/lib/python3.11", python_docs;
    bool no_stdlib = false;
    corpus_cmd->add_option("--out", corpus_out, "Output folder (train.jsonl, held_out.jsonl, corpus.json)")->required();
    corpus_cmd->add_option("--data_root", corpus.data_root, "Folder of the datasets (default: ../shared/data)")
        ->envname("CT3_DATA_ROOT");
    corpus_cmd->add_option("--datasets", corpus.datasets, "Train splits to include")->delimiter(',');
    corpus_cmd->add_option("--python_stdlib", python_stdlib, "Python standard library folder");
    corpus_cmd->add_flag("--no_python_stdlib", no_stdlib, "Leave the Python standard library out");
    corpus_cmd->add_option("--python_docs", python_docs,
                           "Python documentation sources (python3.x-doc: .../html/_sources); empty = none");
    corpus_cmd->add_option("--extra", corpus.extra_datasets, "More sources: NAME=PATH or PATH (test splits refused)");
    corpus_cmd->add_option("--extra_template", corpus.extra_template, "Template of --extra records");
    corpus_cmd->add_option("--held_out_fraction", corpus.held_out_fraction, "Share of documents held out")
        ->check(CLI::Range(0.0, 0.5));
    corpus_cmd->add_option("--seed", corpus.seed, "Seed of the held-out split");
    corpus_cmd->add_option("--ngram", corpus.ngram, "n of the n-gram overlap check against the test sets")
        ->check(CLI::Range(4, 64));

    // tokenizer
    auto * tok_cmd = app.add_subcommand("tokenizer", "Train a SentencePiece tokenizer on the corpus");
    ct3::SentencePieceTrainOptions tok;
    fs::path tok_corpus;
    tok_cmd->add_option("--corpus", tok_corpus, "Corpus folder (its train.jsonl) or a JSONL file")->required();
    tok_cmd->add_option("--out", tok.model_prefix, "Model prefix: writes PREFIX.model and PREFIX.vocab")->required();
    tok_cmd->add_option("--vocab_size", tok.vocab_size, "Vocabulary size")->check(CLI::Range(256, 1 << 20));
    tok_cmd->add_option("--model_type", tok.model_type, "bpe or unigram")->check(CLI::IsMember({"bpe", "unigram"}));
    tok_cmd->add_option("--input_sentence_size", tok.input_sentence_size, "Lines sampled for training");
    tok_cmd->add_option("--seed", tok.random_seed, "Seed of the line sampling");
    tok_cmd->add_option("--threads", tok.num_threads, "Trainer threads (0 = all cores)");

    // tokenize
    auto * tokenize_cmd = app.add_subcommand("tokenize", "Tokenize the corpus into token shards");
    fs::path tz_corpus, tz_tokenizer, tz_out;
    ct3::pretrain::TokenizeOptions tz;
    tokenize_cmd->add_option("--corpus", tz_corpus, "Corpus folder (writes PREFIX_train and PREFIX_held_out)")->required();
    tokenize_cmd->add_option("--tokenizer", tz_tokenizer, "Tokenizer (tokenizer.model, tokenizer.json or a folder)")
        ->required();
    tokenize_cmd->add_option("--out", tz_out, "Output prefix")->required();
    tokenize_cmd->add_option("--shard_tokens", tz.shard_tokens, "Tokens per shard");
    tokenize_cmd->add_option("--threads", tz.num_threads, "Encoding threads (0 = all cores)");

    // train
    auto * train_cmd = app.add_subcommand("train", "Pretrain (resumes the run folder's checkpoint)");
    ct3::pretrain::TrainOptions train;
    fs::path run_dir, data_prefix, config_path;
    std::string preset = "ct3-tiny", backbone = "transformer", backbone_style = "mamba";
    ct3::pretrain::ModelOverrides overrides;
    bool restart = false;
    int nproc = 1;
    double dist_timeout = 0;
    train_cmd->add_option("--run", run_dir, "Run folder (config, checkpoint, logs)")->required();
    train_cmd->add_option("--data", data_prefix, "Token prefix from `tokenize` (PREFIX_train.json, PREFIX_held_out.json)");
    train_cmd->add_option("--train_data", train.train_data, "Train shard manifest (instead of --data)");
    train_cmd->add_option("--held_out_data", train.held_out_data, "Held-out shard manifest (instead of --data)");
    train_cmd->add_option("--preset", preset, "Model shape: " + ct3::pretrain::model_preset_names());
    train_cmd->add_option("--config", config_path,
                          "A Hugging Face config.json, or a TTT one (\"model_type\": \"ttt\"), instead of --preset");
    train_cmd->add_option("--backbone", backbone, "transformer, ttt-linear or ttt-mlp (TTT layers in place of attention)")
        ->check(CLI::IsMember({"transformer", "ttt-linear", "ttt-mlp"}));
    train_cmd->add_option("--backbone_style", backbone_style,
                          "TTT blocks: mamba (pre-conv, shared Q/K with convs, gate; the paper's default) or llama")
        ->check(CLI::IsMember({"mamba", "llama"}));
    ct3::pretrain::TTTLayerOptions ttt_options;
    train_cmd->add_option("--ttt_mini_batch", ttt_options.mini_batch_size,
                          "TTT inner mini-batch b (16; = --seq_len for batch GD over the context)")
        ->check(CLI::Range(1, 1 << 16));
    train_cmd->add_option("--ttt_base_lr", ttt_options.base_lr, "TTT inner eta_base (0 = 1.0 linear, 0.1 mlp)")
        ->check(CLI::NonNegativeNumber);
    train_cmd->add_option("--ttt_inner_norm", ttt_options.inner_norm, "TTT f(x) = x + LN(f_res(x)) (false: f_res(x))");
    train_cmd->add_option("--ttt_learnable_lr", ttt_options.learnable_lr,
                          "TTT token-dependent learnable eta (false: fixed eta_base/head_dim, 1/i kept)");
    train_cmd->add_option("--ttt_learnable_w0", ttt_options.learnable_w0,
                          "TTT learnable initial inner weights (false: W0 = 0; ttt-linear only)");
    train_cmd->add_option("--hidden_size", overrides.hidden_size, "Override the preset");
    train_cmd->add_option("--num_hidden_layers", overrides.num_hidden_layers, "Override the preset");
    train_cmd->add_option("--num_attention_heads", overrides.num_attention_heads, "Override the preset");
    train_cmd->add_option("--num_key_value_heads", overrides.num_key_value_heads, "Override the preset");
    train_cmd->add_option("--intermediate_size", overrides.intermediate_size, "Override the preset");
    train_cmd->add_option("--seq_len", train.seq_len, "Tokens per training sequence (context)");
    train_cmd->add_option("--micro_batch", train.micro_batch, "Sequences per forward/backward");
    train_cmd->add_option("--grad_accum", train.grad_accum, "Micro-batches per optimizer step");
    train_cmd->add_option("--max_steps", train.max_steps, "Optimizer steps");
    train_cmd->add_option("--warmup_steps", train.warmup_steps, "Linear warmup steps");
    train_cmd->add_option("--lr", train.lr, "Peak learning rate");
    train_cmd->add_option("--min_lr_ratio", train.min_lr_ratio, "Final learning rate / peak");
    train_cmd->add_option("--weight_decay", train.weight_decay, "AdamW weight decay (matrices and embeddings)");
    train_cmd->add_option("--beta1", train.beta1, "AdamW beta1");
    train_cmd->add_option("--beta2", train.beta2, "AdamW beta2");
    train_cmd->add_option("--grad_clip", train.grad_clip, "Global gradient-norm clip (0 = off)");
    train_cmd->add_option("--eval_every", train.eval_every, "Steps between held-out evaluations (0 = at the end)");
    train_cmd->add_option("--eval_batches", train.eval_batches, "Held-out micro-batches per evaluation (0 = all)");
    train_cmd->add_option("--checkpoint_every", train.checkpoint_every, "Steps between checkpoints (0 = at the end only, -1 = never)");
    train_cmd->add_option("--log_every", train.log_every, "Steps between log rows");
    train_cmd->add_option("--seed", train.seed, "Seed of the initial weights and the data order");
    train_cmd->add_option("--device", train.device, "auto, cpu, cuda or cuda:N");
    train_cmd->add_option("--precision", train.precision, "auto (bf16 autocast on CUDA), bf16 or fp32");
    train_cmd->add_option("--peak_tflops", train.peak_tflops, "Peak TFLOP/s of the device, for MFU");
    train_cmd->add_flag("--restart", restart, "Discard the run folder's checkpoint and start over");
    train_cmd->add_option("--nproc", nproc, "Data-parallel processes on this host (one per GPU), launched by this program")
        ->check(CLI::Range(1, 1024));
    train_cmd->add_option("--dist_timeout", dist_timeout,
                          "Seconds a rank waits for the others (rendezvous, collectives; default 300, env "
                          "CT3_DIST_TIMEOUT_S)")
        ->check(CLI::PositiveNumber);

    // export
    auto * export_cmd = app.add_subcommand("export", "Write the Hugging Face model folder of a run");
    ct3::pretrain::ExportOptions ex;
    export_cmd->add_option("--run", ex.run_dir, "Run folder")->required();
    export_cmd->add_option("--tokenizer", ex.tokenizer_model, "The tokenizer.model the data was tokenized with")
        ->required();
    export_cmd->add_option("--out", ex.out_dir, "Output model folder")->required();
    export_cmd->add_option("--dtype", ex.dtype, "bfloat16 or float32")->check(CLI::IsMember({"bfloat16", "float32"}));

    CLI11_PARSE(app, argc, argv);
    return ct3::run_program("ct3-pretrain", [&]() -> int {
        ct3::log_init(log_level);
        auto log = ct3::logger("pretrain");
        if (corpus_cmd->parsed()) {
            if (!no_stdlib) corpus.text_roots.push_back(ct3::pretrain::python_stdlib_root(python_stdlib));
            if (!python_docs.empty()) corpus.text_roots.push_back(ct3::pretrain::python_docs_root(python_docs));
            const auto stats = ct3::pretrain::build_corpus(corpus, corpus_out);
            std::cout << ct3::kb::read_whole_file(stats.manifest_path, "corpus manifest") << std::flush;
        } else if (tok_cmd->parsed()) {
            const fs::path jsonl = fs::is_directory(tok_corpus) ? tok_corpus / "train.jsonl" : tok_corpus;
            const fs::path text = fs::path(tok.model_prefix.string() + ".train.txt");
            if (!text.parent_path().empty()) fs::create_directories(text.parent_path());
            const uint64_t lines = ct3::pretrain::write_training_text(jsonl, text);
            log->info("training a {} tokenizer of {} pieces on {} lines", tok.model_type, tok.vocab_size, lines);
            tok.input_files = {text};
            ct3::train_sentencepiece(tok);
            fs::remove(text);
            std::cout << nlohmann::json({{"model", tok.model_prefix.string() + ".model"}}).dump() << "\n";
        } else if (tokenize_cmd->parsed()) {
            auto tokenizer = ct3::load_tokenizer(tz_tokenizer);
            tz.tokenizer_file = tz_tokenizer;
            nlohmann::json out;
            for (const char * split : {"train", "held_out"}) {
                const fs::path prefix = tz_out.string() + "_" + split;
                const auto m = ct3::pretrain::tokenize_corpus(tz_corpus / (std::string(split) + ".jsonl"), *tokenizer,
                                                               prefix, tz);
                out[split] = {{"manifest", prefix.string() + ".json"}, {"tokens", m.tokens},
                              {"documents", m.documents}, {"bytes", m.utf8_bytes}};
                log->info("{}: {} documents, {} tokens ({:.2f} bytes/token)", split, m.documents, m.tokens,
                          m.tokens ? static_cast<double>(m.utf8_bytes) / static_cast<double>(m.tokens) : 0.0);
            }
            std::cout << out.dump() << "\n";
        } else if (train_cmd->parsed()) {
            if (dist_timeout > 0) ::setenv("CT3_DIST_TIMEOUT_S", std::to_string(dist_timeout).c_str(), 1);
            if (nproc > 1) {
                CT3_CHECK(std::getenv("WORLD_SIZE") == nullptr, ErrorKind::invalid_argument,
                          "--nproc {} while WORLD_SIZE is set: launch either with --nproc or with torchrun, not both",
                          nproc);
                std::vector<std::string> args;  // the same command line without --nproc
                for (int i = 1; i < argc; ++i) {
                    const std::string a = argv[i];
                    if (a == "--nproc") {
                        ++i;
                    } else if (a.rfind("--nproc=", 0) != 0) {
                        args.push_back(a);
                    }
                }
                return ct3::pretrain::launch_local(nproc, args);
            }
            if (!data_prefix.empty()) {
                if (train.train_data.empty()) train.train_data = data_prefix.string() + "_train.json";
                if (train.held_out_data.empty()) train.held_out_data = data_prefix.string() + "_held_out.json";
            }
            CT3_CHECK(!train.train_data.empty() && !train.held_out_data.empty(), ErrorKind::invalid_argument,
                      "give --data PREFIX (from `ct3-pretrain tokenize`) or both --train_data and --held_out_data");
            const auto manifest = ct3::pretrain::read_shard_manifest(train.train_data);
            ct3::pretrain::PretrainModelConfig config;
            if (config_path.empty()) {
                config = ct3::pretrain::pretrain_model_config(
                    ct3::pretrain::model_preset(preset, overrides, manifest, train.seq_len), backbone, backbone_style,
                    ttt_options);
            } else {
                const fs::path file = fs::is_directory(config_path) ? config_path / "config.json" : config_path;
                config = ct3::pretrain::PretrainModelConfig::from_json(
                    nlohmann::json::parse(ct3::kb::read_whole_file(file, "--config")), file.string());
                CT3_CHECK(ttt_options.is_default(), ErrorKind::invalid_argument,
                          "--ttt_* flags with --config {}: set those fields in the config.json instead",
                          config_path.string());
                CT3_CHECK(backbone == "transformer" || config.is_ttt(), ErrorKind::invalid_argument,
                          "--backbone {} with --config {}: that config.json is a Transformer's; give a TTT "
                          "config.json or --preset",
                          backbone, config_path.string());
            }
            TrainProgress progress(ct3::stderr_is_tty());
            const auto r = ct3::pretrain::train(config, train, run_dir, restart,
                                                [&](const ct3::pretrain::StepReport & s) { progress(s); });
            if (ct3::pretrain::DistributedConfig::from_env().rank != 0) return r.interrupted ? 130 : 0;
            std::cout << nlohmann::json({{"run", run_dir.string()},
                                         {"steps", r.steps},
                                         {"tokens", r.tokens},
                                         {"elapsed_s", r.elapsed_s},
                                         {"train_loss", r.final_train_loss},
                                         {"held_out_loss", r.final_eval_loss},
                                         {"held_out_bits_per_byte", r.final_eval_bits_per_byte},
                                         {"interrupted", r.interrupted}})
                             .dump()
                      << "\n";
            return r.interrupted ? 130 : 0;
        } else if (export_cmd->parsed()) {
            ct3::pretrain::export_hf(ex);
            std::cout << nlohmann::json({{"model", ex.out_dir.string()}}).dump() << "\n";
        }
        return 0;
    });
}
