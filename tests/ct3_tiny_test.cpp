// The shipped default model models/ct3-tiny against transformers (golden files from
// scripts/pretrain_golden.py on the GPU machine, tests/data/ct3_tiny_golden): the tokenizer gives
// transformers' ids and round-trips, the logits of the whole vocabulary match at fp32 within 1e-4,
// and greedy decoding through ct3's generate() gives transformers' continuation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/generate.h"
#include "models/llama_loader.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

fs::path model_dir() { return fs::path(CT3_SOURCE_DIR) / "models" / "ct3-tiny"; }
fs::path golden_dir() { return ct3::test::data_dir() / "ct3_tiny_golden"; }

class Ct3Tiny : public ::testing::Test {
protected:
    void SetUp() override {
        if (!fs::exists(model_dir() / "model.safetensors")) GTEST_SKIP() << "models/ct3-tiny is not present";
        if (std::getenv("CT3_SKIP_SENTENCEPIECE")) GTEST_SKIP() << "SentencePiece is unavailable in this build";
        golden_ = nlohmann::json::parse(ct3::test::read_file(golden_dir() / "golden.json"));
    }
    nlohmann::json golden_;
};

}  // namespace

TEST_F(Ct3Tiny, TokenizerMatchesTransformers) {
    auto tok = ct3::load_tokenizer(model_dir());
    const auto texts = golden_.at("texts").get<std::vector<std::string>>();
    const auto ids = golden_.at("ids").get<std::vector<std::vector<int32_t>>>();
    for (size_t i = 0; i < texts.size(); ++i) {
        EXPECT_EQ(tok->encode(texts[i]), ids[i]) << texts[i];  // BOS added, as transformers
        EXPECT_EQ(tok->decode(ids[i]), golden_.at("round_trip")[i].get<std::string>()) << texts[i];
    }
}

TEST_F(Ct3Tiny, LogitsMatchTransformersAtFp32) {
    ct3::LlamaForCausalLM model = ct3::load_llama(model_dir());
    auto golden = ct3::SafetensorsFile::open(golden_dir() / "logits.safetensors");
    torch::NoGradGuard no_grad;
    const at::Tensor expected = golden->load("logits");
    const at::Tensor got = model->forward_tokens(golden->load("input_ids"), nullptr);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LE((got - expected).abs().max().item<double>(), 1e-4);
}

TEST_F(Ct3Tiny, GreedyGenerationMatchesTransformers) {
    auto model = std::make_shared<ct3::LlamaForCausalLM>(ct3::load_llama(model_dir()));
    auto tok = ct3::load_tokenizer(model_dir());
    ct3::GenerateParams params;
    auto expected = golden_.at("greedy_ids").get<std::vector<int32_t>>();
    // transformers keeps the EOS that ended generation; ct3 reports it as finish_reason instead.
    const auto eos = (*model)->eos_token_ids();
    if (!expected.empty() && std::find(eos.begin(), eos.end(), expected.back()) != eos.end()) expected.pop_back();
    params.max_new_tokens = static_cast<int>(golden_.at("greedy_ids").size());
    const auto result = ct3::generate(**model, *tok, golden_.at("prompt_ids").get<std::vector<int32_t>>(), params);
    EXPECT_EQ(result.ids, expected) << result.text;
}
