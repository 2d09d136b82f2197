// Golden tests against Hugging Face transformers (tests/tools/make_golden.py): tiny random Llama (GQA,
// llama3 RoPE scaling, untied head, eos list) and Qwen2 (q/k/v biases, tied embeddings) checkpoints.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/llama_loader.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

at::Tensor to_tensor_2d(const nlohmann::json & rows) {
    auto v = rows.get<std::vector<std::vector<int64_t>>>();
    at::Tensor t = torch::empty({static_cast<int64_t>(v.size()), static_cast<int64_t>(v.at(0).size())}, torch::kInt64);
    for (size_t i = 0; i < v.size(); ++i) {
        for (size_t j = 0; j < v[i].size(); ++j) t[i][j] = v[i][j];
    }
    return t;
}

at::Tensor to_float_tensor(const nlohmann::json & nested, std::vector<int64_t> shape) {
    std::vector<float> flat;
    std::function<void(const nlohmann::json &)> walk = [&](const nlohmann::json & j) {
        if (j.is_array()) {
            for (const auto & e : j) walk(e);
        } else {
            flat.push_back(j.get<float>());
        }
    };
    walk(nested);
    return torch::tensor(flat, torch::kFloat32).view(shape);
}

class LlamaHfGolden : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        folder_ = ct3::test::data_dir() / GetParam();
        if (!fs::exists(folder_ / "golden.json") || !fs::exists(folder_ / "model.safetensors")) {
            GTEST_SKIP() << "golden fixture " << folder_ << " (config.json, model.safetensors, golden.json) is absent";
        }
        golden_ = nlohmann::json::parse(ct3::test::read_file(folder_ / "golden.json"));
        model_ = ct3::load_llama(folder_);
        model_->eval();
    }

    fs::path folder_;
    nlohmann::json golden_;
    ct3::LlamaForCausalLM model_{nullptr};
};

TEST_P(LlamaHfGolden, NamedParametersMatchTransformers) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> got, expected;
    for (const auto & p : model_->named_parameters()) got.emplace_back(p.key(), p.value().sizes().vec());
    for (const auto & [name, shape] : golden_.at("named_parameters").items()) {
        expected.emplace_back(name, shape.get<std::vector<int64_t>>());
    }
    // nlohmann::json sorts object keys, so compare as sorted lists.
    std::sort(got.begin(), got.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(got, expected);
}

TEST_P(LlamaHfGolden, LogitsAndLossMatchTransformers) {
    torch::NoGradGuard no_grad;
    at::Tensor ids = to_tensor_2d(golden_.at("input_ids"));
    const int64_t B = ids.size(0), T = ids.size(1), V = model_->vocab_size();
    at::Tensor expected = to_float_tensor(golden_.at("logits"), {B, T, V});

    at::Tensor logits = model_->forward_tokens(ids, nullptr);
    ASSERT_EQ(logits.sizes(), expected.sizes());
    EXPECT_LE((logits - expected).abs().max().item<double>(), 1e-4);

    ct3::LMOutput out = model_->forward_train(ids, at::Tensor(), to_tensor_2d(golden_.at("labels")));
    EXPECT_LE((out.logits - expected).abs().max().item<double>(), 1e-4);
    EXPECT_NEAR(out.loss.item<double>(), golden_.at("loss").get<double>(), 1e-5);
}

TEST_P(LlamaHfGolden, PaddedBatchMatchesTransformers) {
    torch::NoGradGuard no_grad;
    at::Tensor ids = to_tensor_2d(golden_.at("input_ids"));
    at::Tensor mask = to_tensor_2d(golden_.at("attention_mask"));
    at::Tensor expected = to_float_tensor(golden_.at("masked_logits_row1_first8"), {8, model_->vocab_size()});
    ct3::LMOutput out = model_->forward_train(ids, mask, at::Tensor());
    EXPECT_FALSE(out.loss.defined());
    EXPECT_LE((out.logits[1].slice(0, 0, 8) - expected).abs().max().item<double>(), 1e-4);
}

TEST_P(LlamaHfGolden, GreedyDecodingMatchesGenerate) {
    torch::NoGradGuard no_grad;
    auto prompt = golden_.at("prompt_ids").get<std::vector<int64_t>>();
    auto expected = golden_.at("greedy_ids").get<std::vector<int64_t>>();
    auto eos = model_->eos_token_ids();
    ct3::KVCache cache = model_->make_cache();
    at::Tensor input = torch::tensor(prompt, torch::kInt64).view({1, -1});
    std::vector<int64_t> generated;
    while (generated.size() < expected.size()) {
        int64_t token = model_->forward_tokens(input, &cache)[0][-1].argmax().item<int64_t>();
        generated.push_back(token);
        if (std::find(eos.begin(), eos.end(), token) != eos.end()) break;  // as generate() stops on eos
        input = torch::tensor({token}, torch::kInt64).view({1, 1});
    }
    EXPECT_EQ(generated, expected);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaHfGolden, ::testing::Values("tiny_llama", "tiny_qwen2"));

TEST(LlamaLoader, MissingFolderAndBadDtypeNameThePath) {
    ct3::test::TempDir tmp;
    try {
        ct3::load_llama(tmp.path() / "nope");
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ct3::llama_dtype_from_name("int8", "--dtype"), ct3::Error);
    EXPECT_EQ(ct3::llama_dtype_from_name("bf16", "--dtype"), torch::kBFloat16);
}

TEST(LlamaLoader, ShapeMismatchNamesTensor) {
    fs::path src = ct3::test::data_dir() / "tiny_llama";
    if (!fs::exists(src / "model.safetensors")) GTEST_SKIP() << "fixture " << src << " is absent";
    // Same weights, but a config that claims a larger intermediate size.
    ct3::test::TempDir tmp;
    fs::copy_file(src / "model.safetensors", tmp.path() / "model.safetensors");
    auto config = nlohmann::json::parse(ct3::test::read_file(src / "config.json"));
    config["intermediate_size"] = 96;
    ct3::test::write_file(tmp.path() / "config.json", config.dump());
    try {
        ct3::load_llama(tmp.path());
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
    }
}

// On a CUDA build with a GPU: the same golden logits, fp32 (TF32 off) tightly, bf16 loosely, and the
// KV-cache greedy path. Skipped on CPU-only machines (CI).
TEST_P(LlamaHfGolden, CudaMatchesTransformers) {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    at::globalContext().setAllowTF32CuBLAS(false);
    torch::NoGradGuard no_grad;
    at::Tensor ids = to_tensor_2d(golden_.at("input_ids"));
    const int64_t B = ids.size(0), T = ids.size(1), V = model_->vocab_size();
    at::Tensor expected = to_float_tensor(golden_.at("logits"), {B, T, V});
    for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
        ct3::LlamaLoadOptions options;
        options.device = torch::Device(torch::kCUDA);
        options.dtype = dtype;
        auto model = ct3::load_llama(folder_, options);
        at::Tensor logits = model->forward_tokens(ids.to(options.device), nullptr).cpu();
        // bf16 keeps ~3 significant digits; after 2 layers 3% of the largest logit is the honest bound
        // (0.10 of 5.8 was measured on an H100).
        const double tolerance = dtype == torch::kFloat32 ? 1e-4 : 0.03 * expected.abs().max().item<double>();
        EXPECT_LE((logits - expected).abs().max().item<double>(), tolerance) << c10::toString(dtype);
        ct3::KVCache cache = model->make_cache();
        at::Tensor step = model->forward_tokens(ids.slice(1, 0, T - 1).to(options.device), &cache);
        at::Tensor last = model->forward_tokens(ids.slice(1, T - 1).to(options.device), &cache).cpu();
        EXPECT_LE((last.select(1, 0) - logits.select(1, T - 1)).abs().max().item<double>(), tolerance);
    }
}

TEST(LlamaLoader, LoadsInBfloat16) {
    fs::path src = ct3::test::data_dir() / "tiny_qwen2";
    if (!fs::exists(src / "model.safetensors")) GTEST_SKIP() << "fixture " << src << " is absent";
    ct3::LlamaLoadOptions options;
    options.dtype = torch::kBFloat16;
    auto model = ct3::load_llama(src, options);
    EXPECT_EQ(model->dtype(), torch::kBFloat16);
    torch::NoGradGuard no_grad;
    at::Tensor logits = model->forward_tokens(torch::tensor({1, 5, 17, 42}, torch::kInt64).view({1, 4}), nullptr);
    EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(logits.isfinite().all().item<bool>());
}

}  // namespace
