// `ct3-pretrain train --ttt_*` (TTTLayerOptions, models/pretrain/pretrain_model.h): the ablation
// switches reach the TTT model config and its config.json, non-default switches are refused for the
// Transformer, and a model with the "linear attention" row's switches trains (finite loss, gradients
// into the projections, none into the unused W0).
#include <cmath>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/error.h"
#include "models/pretrain/model_presets.h"
#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/token_shards.h"
#include "models/ttt_model.h"
#include "pretrain_tiny_data.h"

namespace {

using ct3::Error;
using ct3::pretrain::PretrainModelConfig;
using ct3::pretrain::TTTLayerOptions;

ct3::LlamaConfig test_sizes(const ct3::test::PretrainTinyData & data, int64_t seq) {
    return ct3::pretrain::model_preset("test", ct3::pretrain::ModelOverrides{},
                                       ct3::pretrain::read_shard_manifest(data.train), seq);
}

TEST(PretrainTTTAblation, OptionsReachTheModelConfigAndConfigJson) {
    ct3::test::PretrainTinyData data;
    TTTLayerOptions o;
    o.mini_batch_size = 32;
    o.base_lr = 0.5;
    o.inner_norm = false;
    o.learnable_lr = false;
    o.learnable_w0 = false;
    const PretrainModelConfig c = ct3::pretrain::pretrain_model_config(test_sizes(data, 32), "ttt-linear", "llama", o);
    ASSERT_TRUE(c.is_ttt());
    EXPECT_EQ(c.ttt->mini_batch_size, 32);
    EXPECT_DOUBLE_EQ(c.ttt->ttt_base_lr, 0.5);
    EXPECT_FALSE(c.ttt->inner_norm);
    EXPECT_FALSE(c.ttt->learnable_lr);
    EXPECT_FALSE(c.ttt->learnable_w0);
    EXPECT_NE(c.describe().find("W0 = 0"), std::string::npos) << c.describe();
    const PretrainModelConfig back = PretrainModelConfig::from_json(c.config_json("float32"), "config.json");
    ASSERT_TRUE(back.is_ttt());
    EXPECT_FALSE(back.ttt->inner_norm || back.ttt->learnable_lr || back.ttt->learnable_w0);
    EXPECT_EQ(back.ttt->mini_batch_size, 32);
    // Defaults: the reference layer and its η_base per type.
    const PretrainModelConfig mlp = ct3::pretrain::pretrain_model_config(test_sizes(data, 32), "ttt-mlp", "mamba");
    EXPECT_TRUE(mlp.ttt->inner_norm && mlp.ttt->learnable_lr && mlp.ttt->learnable_w0);
    EXPECT_DOUBLE_EQ(mlp.ttt->ttt_base_lr, 0.1);
    EXPECT_EQ(mlp.ttt->mini_batch_size, 16);
}

TEST(PretrainTTTAblation, RefusesSwitchesThatDoNotApply) {
    ct3::test::PretrainTinyData data;
    TTTLayerOptions o;
    o.inner_norm = false;
    try {
        ct3::pretrain::pretrain_model_config(test_sizes(data, 32), "transformer", "mamba", o);
        ADD_FAILURE() << "no error";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("--ttt_inner_norm"), std::string::npos) << e.what();
    }
    TTTLayerOptions zero_w0;
    zero_w0.learnable_w0 = false;
    try {
        ct3::pretrain::pretrain_model_config(test_sizes(data, 32), "ttt-mlp", "mamba", zero_w0);
        ADD_FAILURE() << "no error";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("learnable_w0"), std::string::npos) << e.what();
    }
}

TEST(PretrainTTTAblation, LinearAttentionRowTrains) {
    ct3::test::PretrainTinyData data;
    const int64_t seq = 32;
    TTTLayerOptions o;
    o.mini_batch_size = seq;  // batch GD over the whole context
    o.inner_norm = false;
    o.learnable_lr = false;
    o.learnable_w0 = false;
    const PretrainModelConfig c = ct3::pretrain::pretrain_model_config(test_sizes(data, seq), "ttt-linear", "llama", o);
    torch::manual_seed(0);
    const ct3::pretrain::PretrainModel m = ct3::pretrain::build_pretrain_model(c);
    m.module->train();
    const at::Tensor ids = torch::randint(3, c.vocab_size(), {2, seq}, torch::kInt64);
    const ct3::LMOutput out = m.lm->forward_train(ids, torch::ones_like(ids), ids);
    ASSERT_TRUE(out.loss.defined());
    EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
    out.loss.backward();
    auto * ttt = dynamic_cast<ct3::TTTForCausalLMImpl *>(m.lm.get());
    ASSERT_NE(ttt, nullptr);
    auto * layer = ttt->layers->ptr<ct3::TTTBlockImpl>(0)->seq_modeling_block.get();
    EXPECT_TRUE(layer->q_proj->weight.grad().defined());
    EXPECT_GT(layer->q_proj->weight.grad().abs().sum().item<double>(), 0.0);
    EXPECT_FALSE(layer->W1.grad().defined());
}

}  // namespace
