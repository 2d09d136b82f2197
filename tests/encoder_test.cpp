// Encoder modules with random weights: Hugging Face names and shapes, padding invariance,
// MPNet position ids and relative-position buckets, weight loading and config validation.
#include "models/encoder.h"

#include <set>

#include <torch/torch.h>

#include "models/bert.h"
#include "models/error.h"
#include "models/mpnet.h"
#include "tests/test_support.h"

using ct3::EncoderConfig;

namespace {

EncoderConfig tiny_config(const std::string & type) {
    nlohmann::json j = {{"model_type", type},        {"vocab_size", 50},        {"hidden_size", 16},
                        {"num_hidden_layers", 2},    {"num_attention_heads", 4}, {"intermediate_size", 24},
                        {"hidden_act", "gelu"},      {"layer_norm_eps", 1e-12},  {"max_position_embeddings", 40},
                        {"pad_token_id", type == "mpnet" ? 1 : 0}};
    return EncoderConfig::from_json(j, "config.json");
}

std::map<std::string, std::vector<int64_t>> shapes_of(torch::nn::Module & m) {
    std::map<std::string, std::vector<int64_t>> out;
    for (auto & p : m.named_parameters()) out[p.key()] = p.value().sizes().vec();
    return out;
}

// Random but deterministic, non-trivial weights (LayerNorm gains away from 1).
void randomise(torch::nn::Module & m, int seed) {
    torch::manual_seed(seed);
    torch::NoGradGuard g;
    for (auto & p : m.parameters()) p.copy_(torch::randn_like(p) * 0.5);
}

// Runs `ids` alone and again right-padded inside a batch; real positions must agree.
void expect_padding_invariant(ct3::Encoder & model, int64_t pad) {
    torch::NoGradGuard g;
    at::Tensor a = torch::tensor({2, 7, 9, 11, 3}, torch::kInt64).unsqueeze(0);
    at::Tensor b = torch::tensor(std::vector<int64_t>{2, 5, 3, pad, pad}, torch::kInt64).unsqueeze(0);
    at::Tensor batch = torch::cat({a, b});
    at::Tensor mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, torch::kInt64).view({2, 5});
    at::Tensor out = model.forward(batch, mask);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 5, 16}));
    at::Tensor alone_a = model.forward(a, torch::ones_like(a));
    at::Tensor b3 = b.narrow(1, 0, 3);
    at::Tensor alone_b = model.forward(b3, torch::ones_like(b3));
    EXPECT_TRUE(torch::allclose(out[0], alone_a[0], 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(out[1].narrow(0, 0, 3), alone_b[0], 1e-5, 1e-5));
    EXPECT_FALSE(out.isnan().any().item<bool>());
    // Attention really mixes tokens: changing one token changes the others' states.
    at::Tensor a2 = a.clone();
    a2[0][2] = 10;
    EXPECT_FALSE(torch::allclose(model.forward(a2, torch::ones_like(a2))[0][0], alone_a[0][0], 1e-4, 1e-4));
}

}  // namespace

TEST(Encoder, BertParameterNamesAndShapes) {
    ct3::BertModel m(tiny_config("bert"));
    auto s = shapes_of(m);
    std::map<std::string, std::vector<int64_t>> expected = {
        {"embeddings.word_embeddings.weight", {50, 16}},
        {"embeddings.position_embeddings.weight", {40, 16}},
        {"embeddings.token_type_embeddings.weight", {2, 16}},
        {"embeddings.LayerNorm.weight", {16}},
        {"embeddings.LayerNorm.bias", {16}},
    };
    for (int i = 0; i < 2; ++i) {
        std::string p = "encoder.layer." + std::to_string(i) + ".";
        for (const char * n : {"attention.self.query", "attention.self.key", "attention.self.value",
                               "attention.output.dense"}) {
            expected[p + n + ".weight"] = {16, 16};
            expected[p + n + ".bias"] = {16};
        }
        expected[p + "attention.output.LayerNorm.weight"] = {16};
        expected[p + "attention.output.LayerNorm.bias"] = {16};
        expected[p + "intermediate.dense.weight"] = {24, 16};
        expected[p + "intermediate.dense.bias"] = {24};
        expected[p + "output.dense.weight"] = {16, 24};
        expected[p + "output.dense.bias"] = {16};
        expected[p + "output.LayerNorm.weight"] = {16};
        expected[p + "output.LayerNorm.bias"] = {16};
    }
    EXPECT_EQ(s, expected);
}

TEST(Encoder, MPNetParameterNamesAndShapes) {
    ct3::MPNetModel m(tiny_config("mpnet"));
    auto s = shapes_of(m);
    EXPECT_EQ(s.size(), 4u + 1u + 2u * 16u);
    EXPECT_EQ(s.at("embeddings.word_embeddings.weight"), (std::vector<int64_t>{50, 16}));
    EXPECT_EQ(s.at("embeddings.position_embeddings.weight"), (std::vector<int64_t>{40, 16}));
    EXPECT_EQ(s.at("embeddings.LayerNorm.bias"), (std::vector<int64_t>{16}));
    EXPECT_EQ(s.at("encoder.relative_attention_bias.weight"), (std::vector<int64_t>{32, 4}));
    for (const char * n : {"q", "k", "v", "o"}) {
        EXPECT_EQ(s.at(std::string("encoder.layer.1.attention.attn.") + n + ".weight"), (std::vector<int64_t>{16, 16}));
    }
    EXPECT_EQ(s.at("encoder.layer.0.attention.LayerNorm.weight"), (std::vector<int64_t>{16}));
    EXPECT_EQ(s.at("encoder.layer.0.intermediate.dense.weight"), (std::vector<int64_t>{24, 16}));
    EXPECT_EQ(s.at("encoder.layer.1.output.dense.weight"), (std::vector<int64_t>{16, 24}));
    EXPECT_EQ(s.at("encoder.layer.1.output.LayerNorm.bias"), (std::vector<int64_t>{16}));
    EXPECT_EQ(s.count("embeddings.token_type_embeddings.weight"), 0u);
}

TEST(Encoder, BertPaddingDoesNotLeak) {
    ct3::BertModel m(tiny_config("bert"));
    randomise(m, 1);
    expect_padding_invariant(m, 0);
}

TEST(Encoder, MPNetPaddingDoesNotLeak) {
    ct3::MPNetModel m(tiny_config("mpnet"));
    randomise(m, 2);
    expect_padding_invariant(m, 1);
}

TEST(Encoder, MPNetPositionIdsSkipPadding) {
    at::Tensor ids = torch::tensor({0, 5, 6, 2, 1, 1}, torch::kInt64).unsqueeze(0);
    at::Tensor pos = ct3::mpnet_position_ids(ids, 1);
    EXPECT_TRUE(torch::equal(pos, torch::tensor({2, 3, 4, 5, 1, 1}, torch::kInt64).unsqueeze(0)));
}

TEST(Encoder, MPNetRelativePositionBuckets) {
    // relative_position = memory - context. Values worked out from transformers' formula:
    // n = -rp; ret = 16 if n < 0; |n| < 8 exact; else 8 + int(log(|n|/8) / log(16) * 8), capped at 15.
    std::vector<int64_t> rp = {0, -1, 1, -7, 7, -8, 8, -20, 20, -127, -128, -1000, 1000};
    std::vector<int64_t> expected = {0, 1, 17, 7, 23, 8, 24, 10, 26, 15, 15, 15, 31};
    at::Tensor b = ct3::mpnet_relative_position_bucket(torch::tensor(rp, torch::kInt64));
    EXPECT_EQ(std::vector<int64_t>(b.data_ptr<int64_t>(), b.data_ptr<int64_t>() + b.numel()), expected);
    // 32 - 1 boundaries: |n| = 45 -> 8 + int(log(5.625)/log(16)*8) = 8 + 4 = 12.
    EXPECT_EQ(ct3::mpnet_relative_position_bucket(torch::tensor({-45}, torch::kInt64)).item<int64_t>(), 12);
}

TEST(Encoder, ActivationsMatchDefinitions) {
    at::Tensor x = torch::linspace(-4, 4, 33, torch::kFloat64);
    at::Tensor exact = 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0)));
    at::Tensor tanh = 0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
    EXPECT_TRUE(torch::allclose(ct3::apply_activation(x, ct3::Activation::gelu), exact, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(ct3::apply_activation(x, ct3::Activation::gelu_tanh), tanh, 1e-12, 1e-12));
    EXPECT_FALSE(torch::allclose(exact, tanh, 1e-6, 1e-6));
    EXPECT_EQ(ct3::activation_from_string("gelu_new", "c"), ct3::Activation::gelu_tanh);
    EXPECT_THROW(ct3::activation_from_string("quick_gelu", "c"), ct3::Error);
}

TEST(Encoder, LoadWeightsStripsPrefixIgnoresExtrasAndValidates) {
    ct3::BertModel src(tiny_config("bert"));
    randomise(src, 3);
    std::map<std::string, at::Tensor> tensors;
    for (auto & p : src.named_parameters()) tensors["bert." + p.key()] = p.value().detach().to(torch::kFloat16).to(torch::kFloat32);
    tensors["bert.pooler.dense.weight"] = torch::zeros({16, 16});
    tensors["bert.embeddings.position_ids"] = torch::arange(40);
    tensors["cls.predictions.bias"] = torch::zeros({50});

    const std::vector<std::string> prefixes = {"bert."};
    const std::vector<std::string> ignored = {"pooler.", "embeddings.position_ids"};
    ct3::BertModel dst(tiny_config("bert"));
    ct3::load_encoder_weights(dst, tensors, "model.safetensors", prefixes, ignored);
    at::Tensor ids = torch::tensor({{2, 4, 6, 3}}, torch::kInt64);
    at::Tensor mask = torch::ones_like(ids);
    torch::NoGradGuard g;
    for (auto & p : src.named_parameters()) p.value().copy_(tensors["bert." + p.key()]);
    EXPECT_TRUE(torch::allclose(dst.forward(ids, mask), src.forward(ids, mask), 1e-6, 1e-6));

    auto missing = tensors;
    missing.erase("bert.encoder.layer.1.output.dense.bias");
    try {
        ct3::load_encoder_weights(dst, missing, "model.safetensors", prefixes, ignored);
        FAIL() << "missing tensor accepted";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::not_found);
        EXPECT_NE(e.message().find("encoder.layer.1.output.dense.bias"), std::string::npos) << e.message();
        EXPECT_NE(e.message().find("model.safetensors"), std::string::npos);
    }
    auto bad_shape = tensors;
    bad_shape["bert.embeddings.word_embeddings.weight"] = torch::zeros({49, 16});
    try {
        ct3::load_encoder_weights(dst, bad_shape, "model.safetensors", prefixes, ignored);
        FAIL() << "wrong shape accepted";
    } catch (const ct3::Error & e) {
        EXPECT_NE(e.message().find("word_embeddings"), std::string::npos) << e.message();
        EXPECT_NE(e.message().find("[49, 16]"), std::string::npos) << e.message();
    }
}

TEST(Encoder, RejectsBadInputsAndConfigs) {
    ct3::BertModel m(tiny_config("bert"));
    torch::NoGradGuard g;
    at::Tensor oov = torch::tensor({{2, 50}}, torch::kInt64);
    EXPECT_THROW(m.forward(oov, torch::ones_like(oov)), ct3::Error);
    at::Tensor neg = torch::tensor({{-1, 3}}, torch::kInt64);
    EXPECT_THROW(m.forward(neg, torch::ones_like(neg)), ct3::Error);
    at::Tensor too_long = torch::ones({1, 41}, torch::kInt64);
    EXPECT_THROW(m.forward(too_long, torch::ones_like(too_long)), ct3::Error);
    EXPECT_EQ(tiny_config("mpnet").max_tokens(), 38);  // 40 positions - padding_idx 1 - 1

    nlohmann::json j = {{"model_type", "t5"}, {"vocab_size", 10}};
    try {
        EncoderConfig::from_json(j, "cfg.json");
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::unsupported);
        EXPECT_NE(e.message().find("bert, mpnet"), std::string::npos) << e.message();
    }
    nlohmann::json k = {{"model_type", "bert"}, {"vocab_size", 10}, {"hidden_size", 10}, {"num_hidden_layers", 1},
                        {"num_attention_heads", 3}, {"intermediate_size", 4}};
    EXPECT_THROW(EncoderConfig::from_json(k, "cfg.json"), ct3::Error);  // 10 % 3 != 0
    k["num_attention_heads"] = 2;
    k["hidden_size"] = "ten";
    EXPECT_THROW(EncoderConfig::from_json(k, "cfg.json"), ct3::Error);
    k["hidden_size"] = 10;
    k.erase("vocab_size");
    EXPECT_THROW(EncoderConfig::from_json(k, "cfg.json"), ct3::Error);
}
