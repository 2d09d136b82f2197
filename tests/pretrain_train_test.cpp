// The pretraining loop on a tiny model and real text (GSM8K train questions tokenized with the
// committed 512-piece BPE): the loss falls, a run interrupted by a signal resumes into exactly the
// uninterrupted run's losses, the export loads in ct3 with the trained logits, and bad resumes are
// refused.
#include <csignal>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/llama_loader.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/model_presets.h"
#include "models/pretrain/token_shards.h"
#include "models/pretrain/train_checkpoint.h"
#include "models/pretrain/trainer.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "pretrain_tiny_data.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ct3;
using namespace ct3::pretrain;

namespace {

TrainOptions tiny_options(const test::PretrainTinyData & data) {
    return test::tiny_train_options(data.train, data.held_out);
}

LlamaConfig tiny_config(const test::PretrainTinyData & data, int64_t seq_len) {
    return model_preset("test", ModelOverrides{}, read_shard_manifest(data.train), seq_len);
}

}  // namespace

TEST(PretrainSchedule, WarmupThenCosine) {
    TrainOptions o;
    o.lr = 1.0;
    o.min_lr_ratio = 0.1;
    o.warmup_steps = 10;
    o.max_steps = 110;
    EXPECT_DOUBLE_EQ(learning_rate_at(o, 0), 0.1);
    EXPECT_DOUBLE_EQ(learning_rate_at(o, 9), 1.0);
    EXPECT_DOUBLE_EQ(learning_rate_at(o, 10), 1.0);
    EXPECT_NEAR(learning_rate_at(o, 60), 0.55, 1e-12);  // half way: (1 + 0.1) / 2
    EXPECT_NEAR(learning_rate_at(o, 110), 0.1, 1e-12);
    EXPECT_LT(learning_rate_at(o, 80), learning_rate_at(o, 70));
}

TEST(PretrainTrain, LossDecreasesOverFiftySteps) {
    test::PretrainTinyData data;
    TrainOptions o = tiny_options(data);
    o.max_steps = 50;
    o.eval_every = 25;
    test::TempDir run;
    const TrainResult r = train(tiny_config(data, o.seq_len), o, run.path(), false);
    EXPECT_EQ(r.steps, 50);
    EXPECT_EQ(r.tokens, 50 * o.tokens_per_step());
    const std::vector<double> losses = test::train_losses(run.path());
    ASSERT_EQ(losses.size(), 50u);
    EXPECT_NEAR(losses.front(), std::log(512.0), 0.3);  // random init predicts ~uniformly
    double first = 0, last = 0;
    for (int i = 0; i < 5; ++i) first += losses[i] / 5, last += losses[45 + i] / 5;
    EXPECT_LT(last, first - 1.0) << "first " << first << " last " << last;
    EXPECT_TRUE(std::isfinite(r.final_eval_bits_per_byte));
    EXPECT_GT(r.final_eval_bits_per_byte, 0.0);
    EXPECT_TRUE(fs::exists(run.path() / "loss.svg"));
    EXPECT_NE(test::read_file(run.path() / "loss.svg").find("<polyline"), std::string::npos);
    EXPECT_NE(test::read_file(run.path() / "train_log.csv").find("kind,step,tokens"), std::string::npos);
}

TEST(PretrainTrain, ResumeAfterSignalReproducesTheUninterruptedRun) {
    test::PretrainTinyData data;
    const TrainOptions o = tiny_options(data);
    const LlamaConfig config = tiny_config(data, o.seq_len);
    test::TempDir whole, split;
    train(config, o, whole.path(), false);
    const std::vector<double> expected = test::train_losses(whole.path());
    ASSERT_EQ(expected.size(), 20u);

    // SIGINT during step 10's report: the loop checkpoints at step 10 and returns interrupted.
    const TrainResult first = train(config, o, split.path(), false, [](const StepReport & s) {
        if (!s.eval && s.step == 10) std::raise(SIGINT);
    });
    EXPECT_TRUE(first.interrupted);
    EXPECT_EQ(first.steps, 10);
    const TrainResult second = train(config, o, split.path(), false);
    EXPECT_FALSE(second.interrupted);
    EXPECT_EQ(second.steps, 20);
    const std::vector<double> resumed = test::train_losses(split.path());
    ASSERT_EQ(resumed.size(), 20u);
    for (size_t i = 0; i < 20; ++i) EXPECT_EQ(resumed[i], expected[i]) << "step " << i + 1;  // bitwise

    // The final weights agree bitwise as well.
    auto a = SafetensorsFile::open(whole.path() / "checkpoint/model.safetensors");
    auto b = SafetensorsFile::open(split.path() / "checkpoint/model.safetensors");
    for (const TensorInfo & t : a->tensors()) EXPECT_TRUE(torch::equal(a->load(t.name), b->load(t.name))) << t.name;
}

TEST(PretrainTrain, ResumeRefusesChangedOptionsAndModel) {
    test::PretrainTinyData data;
    TrainOptions o = tiny_options(data);
    o.max_steps = 2;
    o.warmup_steps = 1;
    o.eval_every = 0;
    const LlamaConfig config = tiny_config(data, o.seq_len);
    test::TempDir run;
    train(config, o, run.path(), false);
    TrainOptions changed = o;
    changed.lr = 1e-4;
    try {
        train(config, changed, run.path(), false);
        FAIL() << "expected a refusal";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("--lr"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("--restart"), std::string::npos) << e.what();
    }
    LlamaConfig wider = config;
    wider.intermediate_size *= 2;
    EXPECT_THROW(train(wider, o, run.path(), false), Error);
    // --restart starts over with the new options.
    const TrainResult r = train(config, changed, run.path(), true);
    EXPECT_EQ(r.steps, 2);
}

TEST(PretrainExport, HuggingFaceFolderLoadsWithTheTrainedLogits) {
    test::PretrainTinyData data;
    TrainOptions o = tiny_options(data);
    o.max_steps = 5;
    o.eval_every = 0;
    const LlamaConfig config = tiny_config(data, o.seq_len);
    test::TempDir run, out, tok_dir;
    train(config, o, run.path(), false);
    // The export copies whatever tokenizer file the data was made with.
    test::write_file(tok_dir.path() / "tokenizer.model", "not a real sentencepiece model");
    ExportOptions ex;
    ex.run_dir = run.path();
    ex.tokenizer_model = tok_dir.path() / "tokenizer.model";
    ex.out_dir = out.path() / "model";
    ex.dtype = "float32";
    export_hf(ex);
    for (const char * f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model",
                           "tokenizer_config.json", "special_tokens_map.json"}) {
        EXPECT_TRUE(fs::exists(ex.out_dir / f)) << f;
    }
    const auto cfg = nlohmann::json::parse(test::read_file(ex.out_dir / "config.json"));
    EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
    EXPECT_EQ(cfg["vocab_size"], 512);
    EXPECT_EQ(cfg["tie_word_embeddings"], true);

    // The trained model (rebuilt from the checkpoint) and the exported folder give the same logits.
    LlamaForCausalLM trained(config, false);
    auto ckpt = SafetensorsFile::open(run.path() / "checkpoint/model.safetensors");
    for (const TensorInfo & t : ckpt->tensors()) trained->load_parameter(t.name, ckpt->load(t.name), "checkpoint");
    LlamaForCausalLM exported = load_llama(ex.out_dir);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = torch::randint(0, 512, {2, 16}, torch::kInt64);
    EXPECT_TRUE(torch::allclose(trained->forward_tokens(ids, nullptr), exported->forward_tokens(ids, nullptr), 0, 0));

    // bf16 export halves the file.
    ex.dtype = "bfloat16";
    ex.out_dir = out.path() / "bf16";
    export_hf(ex);
    EXPECT_LT(fs::file_size(ex.out_dir / "model.safetensors"),
              fs::file_size(out.path() / "model/model.safetensors") * 0.6);
}
