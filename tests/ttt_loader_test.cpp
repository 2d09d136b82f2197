// TTT model folders (models/ttt_loader.h): save -> load gives identical logits on both backbones (tied
// and untied head), load_causal_lm dispatches on "model_type": "ttt" and the loaded model decodes
// with a cache, and every malformed config.json field or tensor is named in the error.
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/model_loader.h"
#include "models/safetensors.h"
#include "models/ttt_loader.h"
#include "tests/test_support.h"

namespace {

ct3::TTTModelConfig tiny(const std::string & type, const std::string & backbone) {
    ct3::TTTModelConfig c;
    c.vocab_size = 48;
    c.hidden_size = 16;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 24;
    c.mini_batch_size = 4;
    c.ttt_layer_type = type;
    c.backbone = backbone;
    c.ttt_base_lr = ct3::TTTModelConfig::reference_base_lr(type);
    c.max_position_embeddings = 100;
    c.bos_token_id = 3;
    c.eos_token_ids = {4, 5};
    return c;
}

// Expects `fn` to throw a ct3::Error whose message contains every string of `needles`.
template <typename Fn>
void expect_error_naming(Fn fn, const std::vector<std::string> & needles) {
    try {
        fn();
        ADD_FAILURE() << "no error (expected one naming " << needles.front() << ")";
    } catch (const ct3::Error & e) {
        for (const auto & n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

TEST(TTTLoader, SaveLoadGivesIdenticalLogits) {
    struct Variant {
        const char *type, *backbone;
        bool tied;
    };
    for (const Variant & v : {Variant{"linear", "mamba", true}, Variant{"mlp", "llama", true},
                              Variant{"mlp", "mamba", false}, Variant{"linear", "llama", false}}) {
        ct3::test::TempDir dir;
        ct3::TTTModelConfig c = tiny(v.type, v.backbone);
        c.tie_word_embeddings = v.tied;
        torch::manual_seed(21);
        ct3::TTTForCausalLM model(c);
        {
            torch::NoGradGuard no_grad;  // non-default values everywhere, so a dropped tensor shows
            for (auto & p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
        }
        ct3::save_ttt_model(*model, dir.path());
        ct3::TTTForCausalLM loaded = ct3::load_ttt(dir.path());
        const auto & lc = loaded->config();
        EXPECT_EQ(lc.backbone, c.backbone);
        EXPECT_EQ(lc.ttt_layer_type, c.ttt_layer_type);
        EXPECT_EQ(lc.tie_word_embeddings, v.tied);
        EXPECT_EQ(lc.mini_batch_size, 4);
        EXPECT_EQ(lc.max_position_embeddings, 100);
        EXPECT_EQ(lc.bos_token_id, 3);
        EXPECT_EQ(lc.eos_token_ids, (std::vector<int32_t>{4, 5}));
        EXPECT_DOUBLE_EQ(lc.ttt_base_lr, c.ttt_base_lr);
        EXPECT_EQ(loaded->lm_head.is_empty(), v.tied);

        torch::NoGradGuard no_grad;
        at::Tensor ids = torch::randint(0, 48, {2, 11}, torch::kInt64);
        EXPECT_TRUE(torch::equal(model->forward(ids), loaded->forward(ids))) << v.type << " " << v.backbone;

        // Module names of ttt.py's TTTForCausalLM under "model.".
        auto file = ct3::SafetensorsFile::open(dir.path() / "model.safetensors");
        EXPECT_TRUE(file->contains("model.embed_tokens.weight"));
        EXPECT_TRUE(file->contains("model.layers.1.seq_modeling_block.W1"));
        EXPECT_TRUE(file->contains("model.norm.weight"));
        EXPECT_EQ(file->contains("lm_head.weight"), !v.tied);
        EXPECT_EQ(file->contains("model.layers.0.seq_modeling_block.conv_q.weight"), c.backbone == "mamba");
        const nlohmann::json j = nlohmann::json::parse(ct3::test::read_file(dir.path() / "config.json"));
        EXPECT_EQ(j.at("model_type"), "ttt");
        EXPECT_EQ(j.at("pre_conv"), c.backbone == "mamba");
        EXPECT_EQ(j.at("share_qk"), c.backbone == "mamba");
        EXPECT_EQ(j.at("conv_kernel"), 4);
    }
}

TEST(TTTLoader, LoadCausalLMDispatchesAndDecodes) {
    ct3::test::TempDir dir;
    torch::manual_seed(22);
    ct3::TTTForCausalLM model(tiny("linear", "mamba"));
    ct3::save_ttt_model(*model, dir.path());
    ct3::LoadOptions options;
    std::shared_ptr<ct3::CausalLM> lm = ct3::load_causal_lm(dir.path(), options);
    ASSERT_NE(dynamic_cast<ct3::TTTForCausalLMImpl *>(lm.get()), nullptr);
    EXPECT_EQ(lm->vocab_size(), 48);
    EXPECT_EQ(lm->max_position_embeddings(), 100);
    EXPECT_EQ(lm->eos_token_ids(), (std::vector<int32_t>{4, 5}));
    torch::NoGradGuard no_grad;
    at::Tensor ids = torch::randint(0, 48, {1, 9}, torch::kInt64);
    ct3::KVCache cache = lm->make_cache();
    at::Tensor chunked =
        torch::cat({lm->forward_tokens(ids.slice(1, 0, 6), &cache), lm->forward_tokens(ids.slice(1, 6, 9), &cache)}, 1);
    EXPECT_LT((chunked - model->forward(ids)).abs().max().item<double>(), 1e-5);
}

class TTTLoaderConfig : public ::testing::Test {
protected:
    void SetUp() override {
        torch::manual_seed(23);
        ct3::TTTForCausalLM model(tiny("mlp", "mamba"));
        ct3::save_ttt_model(*model, dir.path());
        config = nlohmann::json::parse(ct3::test::read_file(dir.path() / "config.json"));
    }
    // Writes config.json edited by `edit` and expects loading (both entry points) to name `needles`.
    void expect_bad(const std::function<void(nlohmann::json &)> & edit, std::vector<std::string> needles) {
        nlohmann::json j = config;
        edit(j);
        ct3::test::write_file(dir.path() / "config.json", j.dump(2));
        needles.push_back("config.json");
        expect_error_naming([&] { ct3::load_ttt(dir.path()); }, needles);
        expect_error_naming([&] { ct3::load_causal_lm(dir.path(), ct3::LoadOptions{}); }, needles);
    }
    ct3::test::TempDir dir;
    nlohmann::json config;
};

TEST_F(TTTLoaderConfig, BadFieldsAreNamed) {
    expect_bad([](nlohmann::json & j) { j["ttt_layer_type"] = "rnn"; }, {"ttt_layer_type"});
    expect_bad([](nlohmann::json & j) { j.erase("hidden_size"); }, {"hidden_size", "missing"});
    expect_bad([](nlohmann::json & j) { j["num_attention_heads"] = 3; }, {"num_attention_heads"});
    expect_bad([](nlohmann::json & j) { j["mini_batch_size"] = 0; }, {"mini_batch_size"});
    expect_bad([](nlohmann::json & j) { j["mini_batch_size"] = 2.5; }, {"mini_batch_size", "integer"});
    expect_bad([](nlohmann::json & j) { j["ttt_base_lr"] = -1.0; }, {"ttt_base_lr"});
    expect_bad([](nlohmann::json & j) { j["conv_kernel"] = "4"; }, {"conv_kernel"});
    expect_bad([](nlohmann::json & j) { j["share_qk"] = false; }, {"pre_conv", "share_qk", "use_gate"});
    expect_bad([](nlohmann::json & j) { j["eos_token_id"] = 4800; }, {"eos_token_id"});
    expect_bad([](nlohmann::json & j) { j["tie_word_embeddings"] = "yes"; }, {"tie_word_embeddings"});
    // A config that changes a shape: the tensor is named with the shapes.
    nlohmann::json j = config;
    j["intermediate_size"] = 32;
    ct3::test::write_file(dir.path() / "config.json", j.dump(2));
    expect_error_naming([&] { ct3::load_ttt(dir.path()); }, {"model.layers.0.mlp.", "shape", "model.safetensors"});
}

TEST_F(TTTLoaderConfig, MissingAndExtraTensorsAreNamed) {
    auto file = ct3::SafetensorsFile::open(dir.path() / "model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto & info : file->tensors()) {
        if (info.name != "model.layers.1.seq_modeling_block.b1") tensors.emplace_back(info.name, file->load(info.name));
    }
    file.reset();
    ct3::save_safetensors(dir.path() / "model.safetensors", tensors);
    expect_error_naming([&] { ct3::load_ttt(dir.path()); }, {"model.layers.1.seq_modeling_block.b1", "missing"});
    tensors.emplace_back("model.layers.1.seq_modeling_block.b1", torch::zeros({2, 1, 32}));
    tensors.emplace_back("model.layers.0.self_attn.q_proj.weight", torch::zeros({16, 16}));
    ct3::save_safetensors(dir.path() / "model.safetensors", tensors);
    expect_error_naming([&] { ct3::load_ttt(dir.path()); }, {"model.layers.0.self_attn.q_proj.weight"});
}

}  // namespace
