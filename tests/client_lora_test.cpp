// LoRA injection, state handling (use/reset without copies), the exact-base-model guarantee, and the
// PEFT folder format, on the tiny random Llama of tests/data/tiny_llama.
#include <cstdlib>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "client/lora.h"
#include "client/peft_adapter.h"
#include "client/ttt_trainer.h"
#include "models/error.h"
#include "models/llama.h"
#include "models/llama_loader.h"
#include "models/safetensors.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using ct3::client::AdapterTensors;
using ct3::client::LoraAdapter;
using ct3::client::LoraConfig;

namespace {

ct3::LlamaForCausalLM tiny_llama() { return ct3::load_llama(ct3::test::data_dir() / "tiny_llama"); }

LoraConfig small_config() {
    LoraConfig c;
    c.r = 8;
    c.alpha = 16;
    c.dropout = 0.0;
    c.seed = 7;
    return c;
}

at::Tensor probe_ids() { return torch::tensor({1, 17, 300, 42, 5, 99, 250, 3, 77, 11}, torch::kInt64).view({1, -1}); }

at::Tensor logits_of(ct3::LlamaForCausalLMImpl & model) {
    torch::NoGradGuard no_grad;
    return model.forward_tokens(probe_ids(), nullptr);
}

template <typename F>
std::string error_of(F && f) {
    try {
        f();
    } catch (const ct3::Error & e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST(Lora, InjectsTheDefaultTargetsWithPeftNamesAndFreezesTheBase) {
    auto model = tiny_llama();
    auto adapter = LoraAdapter::inject(*model, small_config());
    ASSERT_EQ(adapter->module_names().size(), 10u);  // 2 layers x q k v up down
    EXPECT_EQ(adapter->module_names()[0], "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(adapter->module_names()[4], "model.layers.0.mlp.down_proj");
    AdapterTensors state = adapter->state();
    ASSERT_EQ(state.size(), 20u);
    EXPECT_EQ(state[0].first, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    EXPECT_EQ(state[1].first, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
    EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{8, 64}));
    // k_proj: GQA, 2 kv heads x 16 = 32 outputs.
    EXPECT_EQ(state[3].second.sizes(), (std::vector<int64_t>{32, 8}));
    int64_t trainable = 0;
    for (const auto & p : model->named_parameters()) {
        const bool lora = p.key().find("lora_") != std::string::npos;
        EXPECT_EQ(p.value().requires_grad(), lora) << p.key();
        if (lora) {
            EXPECT_EQ(p.value().scalar_type(), torch::kFloat32);
            trainable += p.value().numel();
        }
    }
    EXPECT_EQ(trainable, adapter->num_parameters());
    // The base weight moved under base_layer, as in a PEFT model.
    EXPECT_NE(model->named_parameters().find("model.layers.0.self_attn.q_proj.base_layer.weight"), nullptr);
    EXPECT_NE(model->named_parameters().find("model.layers.0.self_attn.o_proj.weight"), nullptr);
}

TEST(Lora, InitIsPeftKaimingUniformWithZeroBAndDependsOnlyOnTheSeed) {
    auto m1 = tiny_llama(), m2 = tiny_llama(), m3 = tiny_llama();
    auto a1 = LoraAdapter::inject(*m1, small_config());
    auto a2 = LoraAdapter::inject(*m2, small_config());
    LoraConfig other = small_config();
    other.seed = 8;
    auto a3 = LoraAdapter::inject(*m3, other);
    AdapterTensors s1 = a1->state(), s2 = a2->state(), s3 = a3->state();
    for (size_t i = 0; i < s1.size(); ++i) {
        EXPECT_TRUE(torch::equal(s1[i].second, s2[i].second)) << s1[i].first;
        if (i % 2 == 1) {
            EXPECT_EQ(s1[i].second.abs().max().item<float>(), 0.0f) << "B must start at zero";
        } else {
            const double bound = 1.0 / std::sqrt(static_cast<double>(s1[i].second.size(1)));
            EXPECT_LE(s1[i].second.abs().max().item<double>(), bound);
            EXPECT_GT(s1[i].second.abs().max().item<double>(), 0.8 * bound);  // spans the range
            EXPECT_FALSE(torch::equal(s1[i].second, s3[i].second));
        }
    }
}

TEST(Lora, ZeroBAndResetGiveExactlyTheBaseModelBitwise) {
    auto base = tiny_llama();
    const at::Tensor before = logits_of(*base);
    auto adapter = LoraAdapter::inject(*base, small_config());
    EXPECT_TRUE(torch::equal(logits_of(*base), before));

    // Train a few steps: the logits must change, then reset must restore them bit for bit.
    ct3::client::TrainSample s;
    s.ids = {1, 20, 30, 40, 50, 60, 2};
    ct3::client::TTTOptions options;
    options.learning_rate = 1e-2;
    options.num_epochs = 3;
    auto report = ct3::client::fine_tune(*base, *adapter, {s, s}, 2, options);
    EXPECT_EQ(report.steps, 6);
    EXPECT_LT(report.losses.back(), report.losses.front());
    EXPECT_FALSE(torch::equal(logits_of(*base), before));
    adapter->reset();
    EXPECT_TRUE(torch::equal(logits_of(*base), before));
    // Base weights never moved.
    auto fresh = tiny_llama();
    auto fresh_params = fresh->named_parameters();
    for (const auto & p : base->named_parameters()) {
        if (p.key().find("lora_") != std::string::npos) continue;
        std::string name = p.key();
        const auto pos = name.find(".base_layer");
        if (pos != std::string::npos) name.erase(pos, 11);
        ASSERT_NE(fresh_params.find(name), nullptr) << name;
        EXPECT_TRUE(torch::equal(p.value(), *fresh_params.find(name))) << name;
    }
}

TEST(Lora, DisabledAdapterIsTheBaseLayerEvenWithTrainedWeights) {
    auto model = tiny_llama();
    const at::Tensor before = logits_of(*model);
    auto adapter = LoraAdapter::inject(*model, small_config());
    AdapterTensors trained = adapter->clone_state();
    for (auto & [name, t] : trained) t.uniform_(-0.1, 0.1);
    adapter->use(trained, "test");
    EXPECT_FALSE(torch::equal(logits_of(*model), before));
    adapter->set_enabled(false);
    EXPECT_TRUE(torch::equal(logits_of(*model), before));
}

TEST(Lora, UsePointsAtTheGivenStorageAndResetNeverWritesIntoIt) {
    auto model = tiny_llama();
    auto adapter = LoraAdapter::inject(*model, small_config());
    AdapterTensors cached = adapter->clone_state();
    for (auto & [name, t] : cached) t.uniform_(-0.1, 0.1);
    const AdapterTensors snapshot = [&] {
        AdapterTensors c = cached;
        for (auto & [n, t] : c) t = t.clone();
        return c;
    }();
    adapter->use(cached, "cache");
    AdapterTensors live = adapter->state();
    for (size_t i = 0; i < live.size(); ++i) {
        EXPECT_EQ(live[i].second.data_ptr(), cached[i].second.data_ptr()) << "a hit must not copy";
    }
    // reset + training must leave the cached tensors untouched.
    adapter->reset();
    ct3::client::TrainSample s;
    s.ids = {1, 5, 6, 7, 2};
    ct3::client::TTTOptions options;
    options.learning_rate = 1e-2;
    ct3::client::fine_tune(*model, *adapter, {s}, 2, options);
    for (size_t i = 0; i < cached.size(); ++i) {
        EXPECT_TRUE(torch::equal(cached[i].second, snapshot[i].second)) << cached[i].first;
        EXPECT_NE(adapter->state()[i].second.data_ptr(), cached[i].second.data_ptr());
    }
}

TEST(Lora, UseRejectsForeignOrMisshapenTensorsNamingThem) {
    auto model = tiny_llama();
    auto adapter = LoraAdapter::inject(*model, small_config());
    AdapterTensors state = adapter->clone_state();
    AdapterTensors missing(state.begin() + 1, state.end());
    EXPECT_NE(error_of([&] { adapter->use(missing, "x.safetensors"); })
                  .find("x.safetensors: no tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'"),
              std::string::npos);
    AdapterTensors extra = state;
    extra.emplace_back("base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight", torch::zeros({8, 64}));
    EXPECT_NE(error_of([&] { adapter->use(extra, "x"); }).find("o_proj.lora_A.weight' matches no adapted module"),
              std::string::npos);
    AdapterTensors shaped = state;
    shaped[0].second = torch::zeros({4, 64});
    EXPECT_NE(error_of([&] { adapter->use(shaped, "x"); }).find("has shape [4, 64] (expected [8, 64]"),
              std::string::npos);
    AdapterTensors half = state;
    half[0].second = half[0].second.to(torch::kFloat16);
    EXPECT_NE(error_of([&] { adapter->use(half, "x"); }).find("must be float32"), std::string::npos);
    adapter->load(half, "x");  // load converts
    EXPECT_EQ(adapter->state()[0].second.scalar_type(), torch::kFloat32);
    // A second injection into the same model is refused.
    EXPECT_NE(error_of([&] { LoraAdapter::inject(*model, small_config()); }).find("already carries a LoRA layer"),
              std::string::npos);
}

TEST(Lora, ConfigValidationNamesTheFlag) {
    auto model = tiny_llama();
    LoraConfig c = small_config();
    c.r = 0;
    EXPECT_NE(error_of([&] { LoraAdapter::inject(*model, c); }).find("--lora_rank"), std::string::npos);
    c = small_config();
    c.dropout = 1.0;
    EXPECT_NE(error_of([&] { LoraAdapter::inject(*model, c); }).find("--lora_dropout"), std::string::npos);
    c = small_config();
    c.target_modules = {"nonexistent_proj"};
    EXPECT_NE(error_of([&] { LoraAdapter::inject(*model, c); }).find("matches no projection"), std::string::npos);
    c = small_config();
    EXPECT_DOUBLE_EQ(c.scaling(), 2.0);
    c.use_rslora = true;
    EXPECT_DOUBLE_EQ(c.scaling(), 16.0 / std::sqrt(8.0));
}

TEST(Lora, TargetsByListSuffixRegexAndLayers) {
    auto m1 = tiny_llama();
    LoraConfig c = small_config();
    c.target_modules = {"self_attn.o_proj", "gate_proj"};
    auto a1 = LoraAdapter::inject(*m1, c);
    EXPECT_EQ(a1->module_names(), (std::vector<std::string>{"model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj",
                                                            "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate_proj"}));
    auto m2 = tiny_llama();
    c = small_config();
    c.target_regex = R"(.*\.1\.self_attn\.(q|v)_proj)";
    auto a2 = LoraAdapter::inject(*m2, c);
    EXPECT_EQ(a2->module_names(),
              (std::vector<std::string>{"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
    auto m3 = tiny_llama();
    c = small_config();
    c.layers_to_transform = {1};
    auto a3 = LoraAdapter::inject(*m3, c);
    EXPECT_EQ(a3->module_names().size(), 5u);
    EXPECT_EQ(a3->module_names()[0], "model.layers.1.self_attn.q_proj");
}

TEST(PeftAdapter, SaveLoadRoundTripGivesTheSameTensorsAndLogits) {
    ct3::test::TempDir tmp;
    auto model = tiny_llama();
    LoraConfig c = small_config();
    c.use_rslora = true;
    auto adapter = LoraAdapter::inject(*model, c);
    AdapterTensors trained = adapter->clone_state();
    for (auto & [name, t] : trained) t.uniform_(-0.05, 0.05);
    adapter->use(trained, "test");
    const at::Tensor expected = logits_of(*model);
    ct3::client::save_peft_adapter(tmp.path() / "adapter", *adapter, "tiny_llama");

    const auto config = nlohmann::json::parse(ct3::test::read_file(tmp.path() / "adapter" / "adapter_config.json"));
    EXPECT_EQ(config["peft_type"], "LORA");
    EXPECT_EQ(config["r"], 8);
    EXPECT_EQ(config["use_rslora"], true);
    EXPECT_EQ(config["target_modules"].size(), 5u);
    auto file = ct3::SafetensorsFile::open(tmp.path() / "adapter" / "adapter_model.safetensors");
    EXPECT_EQ(file->tensors().size(), 20u);
    EXPECT_TRUE(file->contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));

    auto other = tiny_llama();
    auto loaded = ct3::client::load_peft_adapter(*other, tmp.path() / "adapter");
    EXPECT_TRUE(loaded->config().use_rslora);
    EXPECT_TRUE(torch::equal(logits_of(*other), expected));
}

TEST(PeftAdapter, BadFoldersFailLoudlyNamingFileAndField) {
    ct3::test::TempDir tmp;
    const fs::path dir = tmp.path() / "a";
    {
        auto model = tiny_llama();
        auto adapter = LoraAdapter::inject(*model, small_config());
        ct3::client::save_peft_adapter(dir, *adapter, "tiny");
    }
    auto config = nlohmann::json::parse(ct3::test::read_file(dir / "adapter_config.json"));
    auto rewrite = [&](const nlohmann::json & j) { ct3::test::write_file(dir / "adapter_config.json", j.dump()); };
    auto load_error = [&] {
        auto model = tiny_llama();
        return error_of([&] { ct3::client::load_peft_adapter(*model, dir); });
    };
    nlohmann::json j = config;
    j["use_dora"] = true;
    rewrite(j);
    EXPECT_NE(load_error().find("adapter_config.json: use_dora is not supported"), std::string::npos);
    j = config;
    j["r"] = "eight";
    rewrite(j);
    EXPECT_NE(load_error().find("r must be an integer"), std::string::npos);
    j = config;
    j["r"] = 4;  // tensors are rank 8
    rewrite(j);
    EXPECT_NE(load_error().find("(expected [4, 64]: rank 4)"), std::string::npos);
    j = config;
    j["target_modules"] = {"q_proj"};  // file has tensors for k, v, up, down too
    rewrite(j);
    EXPECT_NE(load_error().find(".weight' matches no adapted module"), std::string::npos);
    j = config;
    j["peft_type"] = "IA3";
    rewrite(j);
    EXPECT_NE(load_error().find("peft_type is 'IA3'"), std::string::npos);
    rewrite(config);
    fs::remove(dir / "adapter_model.safetensors");
    ct3::test::write_file(dir / "adapter_model.bin", "pickle");
    EXPECT_NE(load_error().find("adapter_model.bin is not read"), std::string::npos);
    fs::remove(dir / "adapter_config.json");
    EXPECT_NE(load_error().find("adapter_config.json not found"), std::string::npos);
}

// Writes tests/data/lora_golden/ct3_adapter (the adapter peft must load: tests/tools/make_lora_golden.py)
// when CT3_WRITE_LORA_FIXTURE names the output folder; skipped otherwise.
TEST(PeftAdapter, WriteCt3AdapterFixture) {
    const char * out = std::getenv("CT3_WRITE_LORA_FIXTURE");
    if (out == nullptr || *out == '\0') GTEST_SKIP() << "set CT3_WRITE_LORA_FIXTURE=DIR to write the fixture";
    auto model = tiny_llama();
    LoraConfig c = small_config();
    c.seed = 1234;
    auto adapter = LoraAdapter::inject(*model, c);
    AdapterTensors trained = adapter->clone_state();
    at::Generator gen = at::detail::createCPUGenerator(99);
    for (auto & [name, t] : trained) t.uniform_(-0.1, 0.1, gen);
    adapter->use(trained, "fixture");
    ct3::client::save_peft_adapter(out, *adapter, "tests/data/tiny_llama");
}

TEST(Lora, Fp32AdapterOnABf16BaseTrainsAndResetsToTheBaseBitwise) {
    ct3::LlamaLoadOptions load;
    load.dtype = torch::kBFloat16;
    auto model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama", load);
    const at::Tensor before = logits_of(*model);
    auto adapter = LoraAdapter::inject(*model, small_config());
    for (const auto & [name, t] : adapter->state()) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
    EXPECT_EQ(model->named_parameters().find("model.layers.0.self_attn.q_proj.base_layer.weight")->scalar_type(),
              torch::kBFloat16);
    EXPECT_TRUE(torch::equal(logits_of(*model), before));
    ct3::client::TrainSample s;
    s.ids = {1, 20, 30, 40, 50, 60, 2};
    ct3::client::TTTOptions options;
    options.learning_rate = 1e-2;
    auto report = ct3::client::fine_tune(*model, *adapter, {s}, 2, options);
    EXPECT_LT(report.losses.back(), report.losses.front());
    for (const auto & [name, t] : adapter->state()) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
    EXPECT_FALSE(torch::equal(logits_of(*model), before));
    adapter->reset();
    EXPECT_TRUE(torch::equal(logits_of(*model), before));
}

TEST(TttTrainer, TokenizationCollationReductionAndWeights) {
    using namespace ct3::client;
    TrainSample a, b;
    a.ids = {1, 5, 6, 2};
    a.weight = 0.25;
    b.ids = {1, 7, 8, 9, 10, 11, 12, 13, 2};
    TrainBatch batch = collate({&a, &b}, 2, 8);
    EXPECT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{2, 16}));
    EXPECT_EQ(batch.input_ids[0][4].item<int64_t>(), 2);  // padded with the pad (EOS) id
    EXPECT_EQ(batch.attention_mask[0].sum().item<int64_t>(), 4);
    EXPECT_EQ(batch.labels[0][3].item<int64_t>(), 2);     // the real EOS is learned
    EXPECT_EQ(batch.labels[0][4].item<int64_t>(), -100);  // padding is not
    EXPECT_EQ(batch.weights, (std::vector<double>{0.25, 1.0}));
    // Reduction: strictly above min(mean, lower median); all-equal keeps nothing (as the original).
    EXPECT_EQ(reduce_by_score({0.9, 0.5, 0.1, 0.05}), (std::vector<size_t>{0, 1}));
    EXPECT_TRUE(reduce_by_score({0.3, 0.3, 0.3}).empty());
    EXPECT_EQ(score_weights({1.0, 3.0}), (std::vector<double>{0.25, 0.75}));
    EXPECT_EQ(score_weights({0.0, 0.0}), (std::vector<double>{0.5, 0.5}));
}

TEST(TttTrainer, WeightedLossScalesEachSampleAndShuffleKeepsWeightsWithSamples) {
    // With one sample, weight w and n = 1 the first loss is unchanged but the update scales with w:
    // after one step from the same state, w = 0 leaves the adapter (B) where weight decay puts it.
    auto run = [](double w, bool shuffle) {
        auto model = tiny_llama();
        auto adapter = LoraAdapter::inject(*model, small_config());
        ct3::client::TrainSample s;
        s.ids = {1, 20, 30, 40, 50, 60, 2};
        s.weight = w;
        ct3::client::TTTOptions options;
        options.weighted = true;
        options.shuffle = shuffle;
        options.num_epochs = 1;
        options.learning_rate = 1e-2;
        ct3::client::fine_tune(*model, *adapter, {s}, 2, options);
        return adapter->state()[1].second.abs().max().item<double>();  // a lora_B, zero at start
    };
    EXPECT_EQ(run(0.0, false), 0.0);
    EXPECT_GT(run(1.0, false), 0.0);
    EXPECT_EQ(run(0.0, true), 0.0);
}
