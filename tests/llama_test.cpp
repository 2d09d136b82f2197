// Llama-family model on random-weight tiny configs: HF names and shapes, config parsing and errors,
// RoPE scaling, KV cache, padding, the training loss and reduced precision.
#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/llama.h"
#include "models/llama_config.h"
#include "models/rope.h"
#include "tests/test_support.h"

using nlohmann::json;

namespace {

json tiny_llama_json() {
    return json{{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"vocab_size", 97},
                {"hidden_size", 32},
                {"intermediate_size", 48},
                {"num_hidden_layers", 2},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"max_position_embeddings", 128},
                {"rms_norm_eps", 1e-5},
                {"hidden_act", "silu"},
                {"rope_theta", 500000.0},
                {"rope_scaling",
                 {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                  {"original_max_position_embeddings", 16}}},
                {"tie_word_embeddings", false},
                {"bos_token_id", 1},
                {"eos_token_id", {2, 3}},
                {"torch_dtype", "bfloat16"},
                {"use_cache", true},
                {"pretraining_tp", 1}};
}

json tiny_qwen2_json() {
    return json{{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"vocab_size", 61},
                {"hidden_size", 32},  {"intermediate_size", 40}, {"num_hidden_layers", 1},
                {"num_attention_heads", 4}, {"num_key_value_heads", 1}, {"rope_theta", 10000.0},
                {"tie_word_embeddings", true}, {"use_sliding_window", false}, {"sliding_window", nullptr},
                {"eos_token_id", 5}, {"max_window_layers", 28}};
}

ct3::LlamaForCausalLM make_model(const json & j, uint64_t seed = 7) {
    torch::manual_seed(seed);
    auto model = ct3::LlamaForCausalLM(ct3::LlamaConfig::from_json(j, "test config"));
    model->eval();
    return model;
}

at::Tensor random_ids(int64_t batch, int64_t seq, int64_t vocab) { return torch::randint(0, vocab, {batch, seq}); }

// Expects from_json(j) to throw ct3::Error whose message mentions `field`.
void expect_config_error(const json & j, const std::string & field, ct3::ErrorKind kind) {
    try {
        ct3::LlamaConfig::from_json(j, "cfg.json");
        FAIL() << "expected an error about " << field;
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
        EXPECT_EQ(e.kind(), kind) << e.what();
    }
}

}  // namespace

TEST(LlamaConfig, ParsesLlama3AndDefaults) {
    ct3::LlamaConfig c = ct3::LlamaConfig::from_json(tiny_llama_json(), "t");
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.num_key_value_heads, 2);
    EXPECT_EQ(c.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 16);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 3}));
    EXPECT_EQ(c.dtype, "bfloat16");
    EXPECT_FALSE(c.qkv_bias);

    // transformers 5 folds rope_theta and the scaling into rope_parameters.
    json j5 = tiny_llama_json();
    j5.erase("rope_scaling");
    j5.erase("rope_theta");
    j5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1234.0}};
    j5["eos_token_id"] = 9;
    ct3::LlamaConfig c5 = ct3::LlamaConfig::from_json(j5, "t");
    EXPECT_EQ(c5.rope.type, "default");
    EXPECT_DOUBLE_EQ(c5.rope.theta, 1234.0);
    EXPECT_EQ(c5.eos_token_ids, std::vector<int32_t>{9});

    ct3::LlamaConfig q = ct3::LlamaConfig::from_json(tiny_qwen2_json(), "t");
    EXPECT_TRUE(q.qkv_bias);
    EXPECT_FALSE(q.o_bias);
    EXPECT_EQ(q.num_key_value_heads, 1);
    EXPECT_EQ(q.bos_token_id, -1);

    json mistral = tiny_llama_json();
    mistral["architectures"] = {"MistralForCausalLM"};
    mistral["model_type"] = "mistral";
    mistral.erase("rope_scaling");
    mistral["sliding_window"] = 4;
    EXPECT_EQ(ct3::LlamaConfig::from_json(mistral, "t").sliding_window, 4);
}

TEST(LlamaConfig, BadFieldsAreNamed) {
    using K = ct3::ErrorKind;
    auto with = [](const char * key, json value) {
        json j = tiny_llama_json();
        j[key] = std::move(value);
        return j;
    };
    expect_config_error(with("hidden_size", 30), "hidden_size", K::invalid_argument);  // 30 % 4 heads
    expect_config_error(with("num_key_value_heads", 3), "num_key_value_heads", K::invalid_argument);
    expect_config_error(with("vocab_size", 0), "vocab_size", K::invalid_argument);
    expect_config_error(with("num_hidden_layers", "two"), "num_hidden_layers", K::invalid_argument);
    expect_config_error(with("intermediate_size", -1), "intermediate_size", K::invalid_argument);
    expect_config_error(with("head_dim", 7), "head_dim", K::invalid_argument);
    expect_config_error(with("hidden_act", "gelu"), "hidden_act", K::unsupported);
    expect_config_error(with("quantization_config", json{{"quant_method", "gptq"}}), "quantization_config",
                        K::unsupported);
    expect_config_error(with("rope_scaling", json{{"type", "yarn"}, {"factor", 4.0}}), "yarn", K::unsupported);
    expect_config_error(with("rope_scaling", json{{"rope_type", "llama3"}, {"factor", 8.0}}), "low_freq_factor",
                        K::invalid_argument);
    expect_config_error(with("architectures", json{"GPT2LMHeadModel"}), "Qwen2ForCausalLM", K::unsupported);
    expect_config_error(with("model_type", "mistral"), "LlamaForCausalLM", K::unsupported);  // arch mismatch
    expect_config_error(with("eos_token_id", -4), "eos_token_id", K::invalid_argument);

    json qwen = tiny_qwen2_json();
    qwen["use_sliding_window"] = true;
    expect_config_error(qwen, "use_sliding_window", K::unsupported);
    qwen = tiny_qwen2_json();
    qwen["attention_bias"] = true;
    expect_config_error(qwen, "attention_bias", K::unsupported);

    EXPECT_THROW(ct3::LlamaConfig::from_json(json::array(), "x"), ct3::Error);
    ct3::test::TempDir tmp;
    ct3::test::write_file(tmp.path() / "config.json", "{not json");
    EXPECT_THROW(ct3::LlamaConfig::from_file(tmp.path()), ct3::Error);
}

TEST(Llama, NamedParametersFollowHuggingFace) {
    auto model = make_model(tiny_llama_json());
    std::vector<std::pair<std::string, std::vector<int64_t>>> got;
    for (const auto & p : model->named_parameters()) got.emplace_back(p.key(), p.value().sizes().vec());
    std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {{"model.embed_tokens.weight", {97, 32}}};
    for (int l = 0; l < 2; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        expected.push_back({p + "self_attn.q_proj.weight", {32, 32}});
        expected.push_back({p + "self_attn.k_proj.weight", {16, 32}});
        expected.push_back({p + "self_attn.v_proj.weight", {16, 32}});
        expected.push_back({p + "self_attn.o_proj.weight", {32, 32}});
        expected.push_back({p + "mlp.gate_proj.weight", {48, 32}});
        expected.push_back({p + "mlp.up_proj.weight", {48, 32}});
        expected.push_back({p + "mlp.down_proj.weight", {32, 48}});
        expected.push_back({p + "input_layernorm.weight", {32}});
        expected.push_back({p + "post_attention_layernorm.weight", {32}});
    }
    expected.push_back({"model.norm.weight", {32}});
    expected.push_back({"lm_head.weight", {97, 32}});
    EXPECT_EQ(got, expected);

    // Qwen2: q/k/v biases, no o bias, tied head (no lm_head parameter).
    auto qwen = make_model(tiny_qwen2_json());
    auto params = qwen->named_parameters();
    EXPECT_NE(params.find("model.layers.0.self_attn.q_proj.bias"), nullptr);
    EXPECT_EQ(params["model.layers.0.self_attn.k_proj.bias"].sizes(), (std::vector<int64_t>{8}));
    EXPECT_EQ(params.find("model.layers.0.self_attn.o_proj.bias"), nullptr);
    EXPECT_EQ(params.find("lm_head.weight"), nullptr);
    EXPECT_EQ(params.size(), 1u + 12u + 1u);
}

TEST(Llama, TiedHeadUsesEmbeddings) {
    torch::NoGradGuard no_grad;
    at::Tensor ids = torch::tensor({1, 7, 9, 4}, torch::kInt64).view({1, 4});
    // Tied: logits = hidden @ embed_tokens.weight^T, so a zero embedding row gives exactly zero logits.
    auto tied = make_model(tiny_qwen2_json());
    tied->model->embed_tokens->weight[3].zero_();
    at::Tensor logits = tied->forward_tokens(ids, nullptr);
    EXPECT_EQ(logits.select(2, 3).abs().max().item<double>(), 0.0);
    EXPECT_GT(logits.select(2, 5).abs().min().item<double>(), 0.0);
    // Untied: the head is lm_head.weight, independent of the embedding.
    auto untied = make_model(tiny_llama_json());
    untied->model->embed_tokens->weight[3].zero_();
    EXPECT_GT(untied->forward_tokens(ids, nullptr).select(2, 3).abs().min().item<double>(), 0.0);
    untied->lm_head->weight[3].zero_();
    EXPECT_EQ(untied->forward_tokens(ids, nullptr).select(2, 3).abs().max().item<double>(), 0.0);
}

TEST(Llama, Llama3RopeScalingFollowsTransformers) {
    // Values from transformers' _compute_llama3_parameters for theta 500000, head_dim 8, factor 8,
    // low 1, high 4, original 16: wavelengths 2*pi/inv_freq split into high/medium/low frequency bands.
    ct3::RopeConfig rope;
    rope.type = "llama3";
    rope.theta = 500000.0;
    rope.factor = 8.0;
    rope.low_freq_factor = 1.0;
    rope.high_freq_factor = 4.0;
    rope.original_max_position_embeddings = 16;
    at::Tensor inv = ct3::rope_inv_freq(rope, 8);
    std::vector<double> expected;
    for (int i = 0; i < 4; ++i) {
        double f = 1.0 / std::pow(500000.0, (2.0 * i) / 8.0);
        double wavelen = 2 * M_PI / f;
        if (wavelen < 16.0 / 4.0) {
            expected.push_back(f);
        } else if (wavelen > 16.0 / 1.0) {
            expected.push_back(f / 8.0);
        } else {
            double smooth = (16.0 / wavelen - 1.0) / (4.0 - 1.0);
            expected.push_back((1 - smooth) * f / 8.0 + smooth * f);
        }
    }
    ASSERT_EQ(inv.numel(), 4);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i].item<double>(), expected[i], 1e-6 * expected[i]) << i;
    EXPECT_LT(inv[0].item<double>(), 1.0);  // wavelength 2*pi lies in the medium band (4, 16): smoothed
    EXPECT_NEAR(inv[3].item<double>(), 1.0 / std::pow(500000.0, 0.75) / 8.0, 1e-12);  // the lowest is divided by 8

    rope.type = "linear";
    at::Tensor lin = ct3::rope_inv_freq(rope, 8);
    ct3::RopeConfig plain;
    plain.theta = 500000.0;
    EXPECT_TRUE(torch::allclose(lin * 8.0, ct3::rope_inv_freq(plain, 8)));
}

TEST(Llama, KvCacheMatchesFullForward) {
    for (const json & j : {tiny_llama_json(), tiny_qwen2_json()}) {
        auto model = make_model(j);
        torch::NoGradGuard no_grad;
        const int64_t V = model->vocab_size();
        at::Tensor ids = random_ids(2, 11, V);
        at::Tensor full = model->forward_tokens(ids, nullptr);
        EXPECT_EQ(full.scalar_type(), torch::kFloat32);
        ct3::KVCache cache = model->make_cache();
        std::vector<at::Tensor> parts = {model->forward_tokens(ids.slice(1, 0, 6), &cache)};
        for (int64_t t = 6; t < 11; ++t) parts.push_back(model->forward_tokens(ids.slice(1, t, t + 1), &cache));
        EXPECT_EQ(cache.length(), 11);
        EXPECT_EQ(cache.keys[0].sizes(), (std::vector<int64_t>{2, j["num_key_value_heads"].get<int64_t>(), 11, 8}));
        EXPECT_LE((torch::cat(parts, 1) - full).abs().max().item<double>(), 1e-5);
        // A default-constructed cache is sized on first use; a wrong batch is refused.
        ct3::KVCache fresh;
        EXPECT_LE((model->forward_tokens(ids, &fresh) - full).abs().max().item<double>(), 1e-5);
        EXPECT_THROW(model->forward_tokens(ids.slice(0, 0, 1).slice(1, 0, 1), &fresh), ct3::Error);
    }
}

TEST(Llama, SlidingWindowMasksOldKeys) {
    json j = tiny_llama_json();
    j["architectures"] = {"MistralForCausalLM"};
    j["model_type"] = "mistral";
    j.erase("rope_scaling");
    j["num_hidden_layers"] = 1;
    j["sliding_window"] = 3;
    auto windowed = make_model(j, 11);
    j["sliding_window"] = nullptr;
    auto full = make_model(j, 11);  // same seed: same weights
    torch::NoGradGuard no_grad;
    at::Tensor ids = random_ids(1, 8, 97);
    at::Tensor a = windowed->forward_tokens(ids, nullptr), b = full->forward_tokens(ids, nullptr);
    // Positions < window see the same keys in both; later positions do not (one layer).
    EXPECT_LE((a.slice(1, 0, 3) - b.slice(1, 0, 3)).abs().max().item<double>(), 1e-6);
    EXPECT_GT((a.slice(1, 3) - b.slice(1, 3)).abs().max().item<double>(), 1e-4);
    // With one layer, position t only depends on tokens t-2..t: changing token 0 leaves t >= 3 unchanged.
    at::Tensor ids2 = ids.clone();
    ids2[0][0] = (ids[0][0].item<int64_t>() + 1) % 97;
    at::Tensor a2 = windowed->forward_tokens(ids2, nullptr);
    EXPECT_LE((a2.slice(1, 3) - a.slice(1, 3)).abs().max().item<double>(), 1e-6);
    // The cache path applies the same window.
    ct3::KVCache cache = windowed->make_cache();
    std::vector<at::Tensor> parts;
    for (int64_t t = 0; t < 8; ++t) parts.push_back(windowed->forward_tokens(ids.slice(1, t, t + 1), &cache));
    EXPECT_LE((torch::cat(parts, 1) - a).abs().max().item<double>(), 1e-5);
}

TEST(Llama, TrainingLossMatchesManualCrossEntropyAndPaddingIsInert) {
    auto model = make_model(tiny_llama_json());
    const int64_t V = 97;
    at::Tensor ids = random_ids(2, 9, V);
    at::Tensor mask = torch::ones({2, 9}, torch::kInt64);
    mask[1].slice(0, 6).fill_(0);  // row 1: 6 real tokens, 3 pads
    at::Tensor labels = ids.clone();
    labels[0].slice(0, 0, 3).fill_(-100);  // prompt tokens not scored
    labels[1].slice(0, 6).fill_(-100);     // padding not scored

    ct3::LMOutput out = model->forward_train(ids, mask, labels);
    ASSERT_TRUE(out.loss.defined());
    // Manual: position t predicts labels[t+1]; count only labels != -100.
    double total = 0.0;
    int count = 0;
    at::Tensor logp = torch::log_softmax(out.logits.detach().to(torch::kFloat64), -1);
    for (int64_t b = 0; b < 2; ++b) {
        for (int64_t t = 0; t + 1 < 9; ++t) {
            int64_t y = labels[b][t + 1].item<int64_t>();
            if (y == -100) continue;
            total -= logp[b][t][y].item<double>();
            ++count;
        }
    }
    EXPECT_EQ(count, 6 + 5);  // row 0: labels 3..8; row 1: labels 1..5
    EXPECT_NEAR(out.loss.item<double>(), total / count, 1e-5);

    // Padding does not change real tokens: row 1 alone (6 tokens) gives the same logits.
    torch::NoGradGuard no_grad;
    at::Tensor alone = model->forward_tokens(ids[1].slice(0, 0, 6).unsqueeze(0), nullptr);
    EXPECT_LE((out.logits[1].slice(0, 0, 6) - alone[0]).abs().max().item<double>(), 1e-5);
    // And what the pads are does not matter either.
    at::Tensor ids2 = ids.clone();
    ids2[1].slice(0, 6).fill_(0);
    EXPECT_LE((model->forward_train(ids2, mask, at::Tensor()).logits[1].slice(0, 0, 6) - alone[0])
                  .abs().max().item<double>(), 1e-5);
    EXPECT_TRUE(out.logits.isfinite().all().item<bool>());
}

TEST(Llama, LossBackpropagatesToEveryParameter) {
    auto model = make_model(tiny_qwen2_json());
    model->train();
    at::Tensor ids = random_ids(2, 7, 61);
    ct3::LMOutput out = model->forward_train(ids, at::Tensor(), ids);
    out.loss.backward();
    for (const auto & p : model->named_parameters()) {
        ASSERT_TRUE(p.value().grad().defined()) << p.key();
        EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    }
}

TEST(Llama, BadInputsThrow) {
    auto model = make_model(tiny_qwen2_json());
    EXPECT_THROW(model->forward_tokens(torch::tensor({1, 2, 61}).view({1, 3}), nullptr), ct3::Error);   // id >= vocab
    EXPECT_THROW(model->forward_tokens(torch::tensor({1, -2}).view({1, 2}), nullptr), ct3::Error);      // negative
    EXPECT_THROW(model->forward_tokens(torch::tensor({1, 2}), nullptr), ct3::Error);                    // 1-D
    EXPECT_THROW(model->forward_tokens(torch::ones({1, 2}, torch::kFloat32), nullptr), ct3::Error);     // float
    at::Tensor ids = random_ids(1, 4, 61);
    EXPECT_THROW(model->forward_train(ids, torch::ones({1, 3}), at::Tensor()), ct3::Error);            // mask shape
    EXPECT_THROW(model->forward_train(ids, at::Tensor(), torch::full({1, 4}, 61)), ct3::Error);        // label id
    EXPECT_THROW(model->load_parameter("model.nope.weight", torch::zeros({1}), "t"), ct3::Error);
    EXPECT_THROW(model->load_parameter("model.norm.weight", torch::zeros({31}), "t"), ct3::Error);
}

TEST(Llama, ProjectionsCanBeReplaced) {
    auto model = make_model(tiny_llama_json());
    torch::NoGradGuard no_grad;
    at::Tensor ids = random_ids(1, 5, 97);
    at::Tensor before = model->forward_tokens(ids, nullptr);
    auto & attn = *model->layer(0).self_attn;
    EXPECT_EQ(attn.projection_names(), (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj"}));
    // A LoRA layer would wrap the original; here a zero Linear of the same shape shows forward() uses the swap.
    torch::nn::Linear zero(torch::nn::LinearOptions(32, 16).bias(false));
    zero->weight.zero_();
    attn.replace_projection("v_proj", torch::nn::AnyModule(zero));
    EXPECT_TRUE(model->named_parameters()["model.layers.0.self_attn.v_proj.weight"].eq(0).all().item<bool>());
    at::Tensor after = model->forward_tokens(ids, nullptr);
    EXPECT_GT((after - before).abs().max().item<double>(), 1e-6);
    EXPECT_THROW(attn.projection("x_proj"), ct3::Error);
}

TEST(Llama, ReducedPrecisionForwardRuns) {
    auto model = make_model(tiny_llama_json());
    torch::NoGradGuard no_grad;
    at::Tensor ids = random_ids(2, 6, 97);
    at::Tensor ref = model->forward_tokens(ids, nullptr);
    model->to(torch::kBFloat16);
    EXPECT_EQ(model->dtype(), torch::kBFloat16);
    EXPECT_EQ(model->device().type(), c10::DeviceType::CPU);
    ct3::KVCache cache = model->make_cache();
    at::Tensor logits = model->forward_tokens(ids, &cache);
    EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
    EXPECT_EQ(cache.keys[0].scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(logits.isfinite().all().item<bool>());
    // bf16 keeps ~3 significant digits: the logits stay close to the float32 ones.
    EXPECT_LE((logits - ref).abs().max().item<double>(), 0.05 * std::max(1.0, ref.abs().max().item<double>()));
    ct3::LMOutput out = model->forward_train(ids, at::Tensor(), ids);
    EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
}
