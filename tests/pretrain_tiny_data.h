// Tiny pretraining data shared by the pretraining tests: token shards of 240 short documents (GSM8K
// train questions when ../shared is present, generated arithmetic sentences otherwise), every 8th
// held out, tokenized with the committed 512-piece BPE fixture.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/pretrain/token_shards.h"
#include "models/pretrain/train_options.h"
#include "models/tokenizer.h"
#include "test_support.h"

namespace ct3::test {

struct PretrainTinyData {
    TempDir dir;
    std::filesystem::path train, held_out;
    PretrainTinyData() {
        std::string jsonl, held;
        int n = 0;
        const std::filesystem::path gsm8k =
            shared_dir().empty() ? std::filesystem::path() : shared_dir() / "data/gsm8k/train.jsonl";
        if (!gsm8k.empty() && std::filesystem::exists(gsm8k)) {
            std::ifstream in(gsm8k);
            for (std::string line; std::getline(in, line) && n < 240; ++n) {
                const auto j = nlohmann::json::parse(line);
                const std::string doc =
                    nlohmann::json({{"source", "gsm8k"}, {"text", j["question"].get<std::string>()}}).dump() + "\n";
                (n % 8 == 7 ? held : jsonl) += doc;
            }
        } else {
            for (; n < 240; ++n) {
                const std::string text = "Tom has " + std::to_string(n) + " apples and buys " + std::to_string(n % 7) +
                                         " more. How many apples does Tom have now?";
                const std::string doc = nlohmann::json({{"source", "synthetic"}, {"text", text}}).dump() + "\n";
                (n % 8 == 7 ? held : jsonl) += doc;
            }
        }
        write_file(dir.path() / "train.jsonl", jsonl);
        write_file(dir.path() / "held_out.jsonl", held);
        // The 512-piece BPE fixture has no BOS/EOS: documents are framed with ids 1 and 2 by hand.
        auto tok = load_tokenizer(data_dir() / "tiny_llama_bpe");
        for (const char * split : {"train", "held_out"}) {
            std::vector<int32_t> tokens;
            pretrain::ShardManifest m;
            pretrain::for_each_corpus_text(dir.path() / (std::string(split) + ".jsonl"), [&](std::string && text) {
                tokens.push_back(1);
                for (int32_t id : tok->encode(text)) tokens.push_back(id);
                tokens.push_back(2);
                m.documents += 1;
                m.utf8_bytes += text.size();
            });
            const std::filesystem::path shard = dir.path() / (std::string("tokens_") + split + "_000.bin");
            pretrain::write_token_shard(shard, tokens, 512);
            m.tokens = tokens.size();
            m.vocab_size = 512;
            m.bytes_per_token = 2;
            m.bos_id = 1;
            m.eos_id = 2;
            m.shards = {shard};
            m.shard_tokens = {tokens.size()};
            write_file(dir.path() / (std::string("tokens_") + split + ".json"), m.to_json(dir.path()).dump());
        }
        train = dir.path() / "tokens_train.json";
        held_out = dir.path() / "tokens_held_out.json";
    }
};

// CPU training options for the tiny data: 20 steps of 4 x 32 tokens x 2 accumulated micro-batches,
// a log row every step, held-out evaluation every 10 steps.
inline pretrain::TrainOptions tiny_train_options(const std::filesystem::path & train,
                                                 const std::filesystem::path & held_out) {
    pretrain::TrainOptions o;
    o.train_data = train;
    o.held_out_data = held_out;
    o.seq_len = 32;
    o.micro_batch = 4;
    o.grad_accum = 2;
    o.max_steps = 20;
    o.warmup_steps = 4;
    o.lr = 3e-3;
    o.eval_every = 10;
    o.eval_batches = 4;
    o.checkpoint_every = 0;
    o.log_every = 1;
    o.device = "cpu";
    o.seed = 7;
    return o;
}

// The training losses a run logged, in step order (train_log.jsonl rows of kind "train").
inline std::vector<double> train_losses(const std::filesystem::path & run) {
    std::vector<double> losses;
    std::ifstream in(run / "train_log.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j["kind"] == "train") losses.push_back(j["loss"].get<double>());
    }
    return losses;
}

}  // namespace ct3::test
