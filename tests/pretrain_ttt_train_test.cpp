// The pretraining loop on TTT backbones (ct3-pretrain train --backbone ttt-linear|ttt-mlp), on the
// tiny real-text data of the Transformer's tests: the loss falls, a run interrupted by a signal
// resumes into exactly the uninterrupted run's losses, the exported folder loads through ct3's model
// loader with the trained logits and generates through generate(); bad backbone flags are named.
#include <csignal>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/generate.h"
#include "models/model_loader.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/model_presets.h"
#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/token_shards.h"
#include "models/pretrain/trainer.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "pretrain_tiny_data.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ct3;
using namespace ct3::pretrain;

namespace {

PretrainModelConfig ttt_config(const test::PretrainTinyData & data, int64_t seq_len, const std::string & backbone,
                               const std::string & style = "mamba") {
    PretrainModelConfig c = pretrain_model_config(
        model_preset("test", ModelOverrides{}, read_shard_manifest(data.train), seq_len), backbone, style);
    c.ttt->mini_batch_size = 8;  // several mini-batches per 32-token window
    return c;
}

}  // namespace

TEST(PretrainTTT, BackboneFlagsBuildTheTTTModel) {
    test::PretrainTinyData data;
    const LlamaConfig sizes = model_preset("test", ModelOverrides{}, read_shard_manifest(data.train), 32);
    const PretrainModelConfig mlp = pretrain_model_config(sizes, "ttt-mlp", "llama");
    ASSERT_TRUE(mlp.is_ttt());
    EXPECT_EQ(mlp.ttt->ttt_layer_type, "mlp");
    EXPECT_EQ(mlp.ttt->backbone, "llama");
    EXPECT_DOUBLE_EQ(mlp.ttt->ttt_base_lr, 0.1);
    EXPECT_EQ(mlp.ttt->hidden_size, sizes.hidden_size);
    EXPECT_EQ(mlp.ttt->vocab_size, 512);
    EXPECT_EQ(mlp.ttt->eos_token_ids, std::vector<int32_t>{2});
    EXPECT_FALSE(pretrain_model_config(sizes, "transformer", "mamba").is_ttt());
    try {
        pretrain_model_config(sizes, "rwkv", "mamba");
        ADD_FAILURE() << "no error";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("--backbone"), std::string::npos) << e.what();
    }
    EXPECT_THROW(pretrain_model_config(sizes, "ttt-linear", "gpt"), Error);
    // The run's config.json round-trips through the TTT config reader.
    const PretrainModelConfig back = PretrainModelConfig::from_json(mlp.config_json("float32"), "config.json");
    ASSERT_TRUE(back.is_ttt());
    EXPECT_EQ(back.config_json("float32"), mlp.config_json("float32"));
    const PretrainModel model = build_pretrain_model(mlp);
    EXPECT_NE(dynamic_cast<TTTForCausalLMImpl *>(model.lm.get()), nullptr);
}

TEST(PretrainTTT, TTTLinearLossDecreases) {
    test::PretrainTinyData data;
    TrainOptions o = test::tiny_train_options(data.train, data.held_out);
    o.max_steps = 40;
    o.eval_every = 20;
    test::TempDir run;
    const TrainResult r = train(ttt_config(data, o.seq_len, "ttt-linear"), o, run.path(), false);
    EXPECT_EQ(r.steps, 40);
    const std::vector<double> losses = test::train_losses(run.path());
    ASSERT_EQ(losses.size(), 40u);
    EXPECT_NEAR(losses.front(), std::log(512.0), 0.3);
    double first = 0, last = 0;
    for (int i = 0; i < 5; ++i) first += losses[i] / 5, last += losses[35 + i] / 5;
    EXPECT_LT(last, first - 1.0) << "first " << first << " last " << last;
    EXPECT_TRUE(std::isfinite(r.final_eval_loss));
    const auto cfg = nlohmann::json::parse(test::read_file(run.path() / "config.json"));
    EXPECT_EQ(cfg["model_type"], "ttt");
    EXPECT_EQ(cfg["ttt_layer_type"], "linear");
}

TEST(PretrainTTT, ResumeAfterSignalReproducesTheUninterruptedRun) {
    test::PretrainTinyData data;
    TrainOptions o = test::tiny_train_options(data.train, data.held_out);
    o.max_steps = 12;
    o.eval_every = 6;
    const PretrainModelConfig config = ttt_config(data, o.seq_len, "ttt-mlp", "llama");
    test::TempDir whole, split;
    train(config, o, whole.path(), false);
    const std::vector<double> expected = test::train_losses(whole.path());
    ASSERT_EQ(expected.size(), 12u);
    const TrainResult first = train(config, o, split.path(), false, [](const StepReport & s) {
        if (!s.eval && s.step == 5) std::raise(SIGINT);
    });
    EXPECT_TRUE(first.interrupted);
    EXPECT_EQ(first.steps, 5);
    // Another backbone cannot resume this run.
    EXPECT_THROW(train(ttt_config(data, o.seq_len, "ttt-linear", "llama"), o, split.path(), false), Error);
    const TrainResult second = train(config, o, split.path(), false);
    EXPECT_EQ(second.steps, 12);
    const std::vector<double> resumed = test::train_losses(split.path());
    ASSERT_EQ(resumed.size(), 12u);
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(resumed[i], expected[i]) << "step " << i + 1;  // bitwise
}

TEST(PretrainTTT, ExportLoadsThroughTheModelLoaderAndGenerates) {
    test::PretrainTinyData data;
    TrainOptions o = test::tiny_train_options(data.train, data.held_out);
    o.max_steps = 6;
    o.eval_every = 0;
    const PretrainModelConfig config = ttt_config(data, o.seq_len, "ttt-linear");
    test::TempDir run, out, tok_dir;
    train(config, o, run.path(), false);
    test::write_file(tok_dir.path() / "tokenizer.model", "not a real sentencepiece model");
    ExportOptions ex;
    ex.run_dir = run.path();
    ex.tokenizer_model = tok_dir.path() / "tokenizer.model";
    ex.out_dir = out.path() / "model";
    ex.dtype = "float32";
    export_hf(ex);
    for (const char * f :
         {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"}) {
        EXPECT_TRUE(fs::exists(ex.out_dir / f)) << f;
    }

    // The checkpoint's weights in a fresh model == the exported folder loaded by load_causal_lm.
    PretrainModel trained = build_pretrain_model(config);
    {
        torch::NoGradGuard no_grad;
        auto ckpt = SafetensorsFile::open(run.path() / "checkpoint/model.safetensors");
        for (auto & p : trained.module->named_parameters(true)) p.value().copy_(ckpt->load(p.key()));
    }
    std::shared_ptr<CausalLM> exported = load_causal_lm(ex.out_dir, LoadOptions{});
    ASSERT_NE(dynamic_cast<TTTForCausalLMImpl *>(exported.get()), nullptr);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = torch::randint(0, 512, {2, 20}, torch::kInt64);
    EXPECT_TRUE(torch::equal(trained.lm->forward_tokens(ids, nullptr), exported->forward_tokens(ids, nullptr)));

    // generate() runs it with the tokenizer the data was made with.
    auto tokenizer = load_tokenizer(test::data_dir() / "tiny_llama_bpe");
    GenerateParams params;
    params.max_new_tokens = 12;
    params.stop_at_eos = false;
    params.sampling.temperature = 0.0f;
    std::vector<int32_t> prompt{1};
    for (int32_t id : tokenizer->encode("Tom has 3 apples")) prompt.push_back(id);
    const GenerateResult result = generate(*exported, *tokenizer, prompt, params);
    EXPECT_EQ(result.ids.size(), 12u);
    EXPECT_EQ(result.finish_reason, "length");
}
