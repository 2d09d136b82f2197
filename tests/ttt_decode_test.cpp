// TTT language models as CausalLMs (models/ttt_model.h): decoding through KVCache::recurrent gives
// the logits of one full-sequence forward, token by token and in chunks that start and end inside
// mini-batches, on both backbones and both inner models (float64); clear() restarts the sequence;
// generate() greedy equals a naive argmax loop that re-runs the whole sequence each step;
// forward_train is the shifted HF loss and accepts right padding only.
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/error.h"
#include "models/generate.h"
#include "models/llama.h"
#include "models/ttt_model.h"

namespace {

constexpr int64_t k_vocab = 64;

double max_diff(const at::Tensor & a, const at::Tensor & b) {
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

ct3::TTTModelConfig tiny(const std::string & type, const std::string & backbone, int64_t mini_batch) {
    ct3::TTTModelConfig c;
    c.vocab_size = k_vocab;
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.intermediate_size = 48;
    c.mini_batch_size = mini_batch;
    c.ttt_layer_type = type;
    c.backbone = backbone;
    c.ttt_base_lr = ct3::TTTModelConfig::reference_base_lr(type);
    c.initializer_range = 0.1;  // large enough that the inner updates move the logits visibly
    return c;
}

// A float64 model with non-trivial δ (so tok_i is not plain 1/i) and norms.
ct3::TTTForCausalLM make_model(const ct3::TTTModelConfig & c, uint64_t seed) {
    torch::manual_seed(seed);
    ct3::TTTForCausalLM model(c);
    model->to(torch::kFloat64);
    torch::NoGradGuard no_grad;
    for (auto & p : model->named_parameters()) {
        if (p.key().find("learnable_token_idx") != std::string::npos) p.value().normal_(0.0, 0.05);
        if (p.key().find("ttt_norm_bias") != std::string::npos) p.value().normal_(0.0, 0.2);
    }
    return model;
}

struct Case {
    std::string type, backbone;
    int64_t mini_batch;
};

void PrintTo(const Case & c, std::ostream * os) {
    *os << c.backbone << "/" << c.type << "/b" << c.mini_batch;
}

std::string case_name(const ::testing::TestParamInfo<Case> & info) {
    return info.param.backbone + "_" + info.param.type + "_b" + std::to_string(info.param.mini_batch);
}

class TTTDecode : public ::testing::TestWithParam<Case> {};

TEST_P(TTTDecode, TokenByTokenEqualsFullForward) {
    const Case & k = GetParam();
    auto model = make_model(tiny(k.type, k.backbone, k.mini_batch), 3);
    torch::NoGradGuard no_grad;
    at::Tensor ids = torch::randint(0, k_vocab, {2, 21}, torch::kInt64);
    at::Tensor full = model->forward_tokens(ids, nullptr);
    ct3::KVCache cache = model->make_cache();
    ASSERT_TRUE(cache.recurrent != nullptr);
    std::vector<at::Tensor> steps;
    for (int64_t t = 0; t < ids.size(1); ++t) {
        EXPECT_EQ(cache.length(), t);
        steps.push_back(model->forward_tokens(ids.slice(1, t, t + 1), &cache));
    }
    EXPECT_EQ(cache.length(), 21);
    EXPECT_TRUE(cache.keys.empty());  // constant-size state: no keys/values grow
    at::Tensor decoded = torch::cat(steps, 1);
    ASSERT_EQ(decoded.sizes(), full.sizes());
    EXPECT_EQ(decoded.scalar_type(), torch::kFloat32);
    EXPECT_LT(max_diff(decoded, full), 1e-5);  // logits are float32; the model runs in float64
}

TEST_P(TTTDecode, ChunksStartingMidMiniBatchEqualFullForward) {
    const Case & k = GetParam();
    auto model = make_model(tiny(k.type, k.backbone, k.mini_batch), 4);
    torch::NoGradGuard no_grad;
    at::Tensor ids = torch::randint(0, k_vocab, {2, 24}, torch::kInt64);
    at::Tensor full = model->forward_tokens(ids, nullptr);
    // Starts at 0, 5, 6, 17: inside a mini-batch of 4 and of 16 (17 = 16 + 1) alike.
    const std::vector<int64_t> sizes{5, 1, 11, 7};
    ct3::KVCache cache = model->make_cache();
    std::vector<at::Tensor> parts;
    int64_t start = 0;
    for (int64_t n : sizes) {
        parts.push_back(model->forward_tokens(ids.slice(1, start, start + n), &cache));
        start += n;
        EXPECT_EQ(cache.length(), start);
    }
    EXPECT_LT(max_diff(torch::cat(parts, 1), full), 1e-5);

    // The state matters: the last chunk run from a fresh cache gives other logits.
    ct3::KVCache fresh = model->make_cache();
    at::Tensor alone = model->forward_tokens(ids.slice(1, 17, 24), &fresh);
    EXPECT_GT(max_diff(alone, full.slice(1, 17, 24)), 1e-3);
}

TEST_P(TTTDecode, ClearRestartsTheSequence) {
    const Case & k = GetParam();
    auto model = make_model(tiny(k.type, k.backbone, k.mini_batch), 5);
    torch::NoGradGuard no_grad;
    at::Tensor first = torch::randint(0, k_vocab, {1, 9}, torch::kInt64);
    at::Tensor second = torch::randint(0, k_vocab, {1, 7}, torch::kInt64);
    ct3::KVCache cache = model->make_cache();
    model->forward_tokens(first, &cache);
    ASSERT_EQ(cache.length(), 9);
    cache.clear();
    EXPECT_EQ(cache.length(), 0);
    at::Tensor again = torch::cat(
        {model->forward_tokens(second.slice(1, 0, 3), &cache), model->forward_tokens(second.slice(1, 3, 7), &cache)},
        1);
    EXPECT_LT(max_diff(again, model->forward_tokens(second, nullptr)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(BackbonesAndInnerModels, TTTDecode,
                         ::testing::Values(Case{"linear", "mamba", 4}, Case{"mlp", "mamba", 4},
                                           Case{"linear", "llama", 4}, Case{"mlp", "llama", 4},
                                           Case{"linear", "mamba", 16}, Case{"mlp", "llama", 16}),
                         case_name);

// Token i decodes to the letter 'A' + i (ids 0..63 -> printable ASCII), no special tokens.
class LetterTokenizer : public ct3::Tokenizer {
public:
    std::vector<int32_t> encode(const std::string & text, const ct3::EncodeOptions &) const override {
        std::vector<int32_t> ids;
        for (char c : text) ids.push_back(static_cast<int32_t>(c - 'A'));
        return ids;
    }
    std::string decode(const std::vector<int32_t> & ids, bool) const override {
        std::string out;
        for (int32_t id : ids) out += static_cast<char>('A' + id);
        return out;
    }
    std::string id_to_piece(int32_t id) const override { return decode({id}, false); }
    std::optional<int32_t> piece_to_id(const std::string & piece) const override {
        if (piece.size() == 1) return static_cast<int32_t>(piece[0] - 'A');
        return std::nullopt;
    }
    size_t vocab_size() const override { return k_vocab; }
    int32_t bos_id() const override { return -1; }
    int32_t eos_id() const override { return -1; }
    int32_t pad_id() const override { return -1; }
    int32_t unk_id() const override { return -1; }
    bool is_special(int32_t) const override { return false; }
};

TEST(TTTGenerate, GreedyEqualsNaiveArgmaxOfFullForwards) {
    for (const char * backbone : {"mamba", "llama"}) {
        ct3::TTTModelConfig c = tiny("linear", backbone, 4);
        c.eos_token_ids.clear();
        torch::manual_seed(8);
        ct3::TTTForCausalLM model(c);  // float32, as ct3-generate runs it
        model->eval();
        const std::vector<int32_t> prompt{5, 17, 3, 40, 22, 9};  // 6 tokens: decoding starts mid-mini-batch
        ct3::GenerateParams params;
        params.max_new_tokens = 13;
        params.sampling.temperature = 0.0f;
        LetterTokenizer tokenizer;
        const ct3::GenerateResult result = ct3::generate(*model, tokenizer, prompt, params);
        ASSERT_EQ(result.ids.size(), 13u) << backbone;
        EXPECT_EQ(result.finish_reason, "length");

        torch::NoGradGuard no_grad;
        std::vector<int64_t> seq(prompt.begin(), prompt.end());
        std::vector<int32_t> naive;
        for (int step = 0; step < 13; ++step) {
            at::Tensor ids = torch::tensor(seq, torch::kInt64).view({1, -1});
            const int64_t next = model->forward(ids).select(1, ids.size(1) - 1).argmax(-1).item<int64_t>();
            naive.push_back(static_cast<int32_t>(next));
            seq.push_back(next);
        }
        EXPECT_EQ(result.ids, naive) << backbone;
        EXPECT_EQ(result.text, tokenizer.decode(naive, true));
    }
}

TEST(TTTGenerate, StopsAtTheConfiguredContextLength) {
    ct3::TTTModelConfig c = tiny("linear", "llama", 4);
    c.max_position_embeddings = 10;
    c.eos_token_ids.clear();
    ct3::TTTForCausalLM model(c);
    EXPECT_EQ(model->max_position_embeddings(), 10);
    EXPECT_EQ(model->bos_token_id(), 1);  // the ttt.py default
    ct3::GenerateParams params;
    params.max_new_tokens = 50;
    params.sampling.temperature = 0.0f;
    LetterTokenizer tokenizer;
    const ct3::GenerateResult result = ct3::generate(*model, tokenizer, {1, 2, 3, 4}, params);
    EXPECT_EQ(result.finish_reason, "length");
    EXPECT_EQ(result.ids.size(), 7u);  // positions 4..9 fed back, the 7th token is never fed
}

TEST(TTTForwardTrain, ShiftedLossAndRightPaddingOnly) {
    auto model = make_model(tiny("mlp", "mamba", 4), 9);
    at::Tensor ids = torch::randint(0, k_vocab, {2, 10}, torch::kInt64);
    at::Tensor labels = ids.clone();
    labels[1].slice(0, 7).fill_(-100);  // the padded tail of row 1
    at::Tensor mask = torch::ones({2, 10}, torch::kInt64);
    mask[1].slice(0, 7).fill_(0);
    ct3::LMOutput out = model->forward_train(ids, mask, labels);
    ASSERT_TRUE(out.loss.defined());
    EXPECT_NEAR(out.loss.item<double>(), ct3::causal_lm_loss(model->forward(ids), labels).item<double>(), 1e-6);
    // Right padding changes nothing before it: row 1's first 7 logits equal the unpadded forward.
    at::Tensor alone = model->forward(ids.slice(0, 1, 2).slice(1, 0, 7));
    EXPECT_LT(max_diff(out.logits.slice(0, 1, 2).slice(1, 0, 7), alone), 1e-5);
    // The loss has outer-loop gradients.
    out.loss.backward();
    EXPECT_TRUE(model->embed_tokens->weight.grad().defined());

    at::Tensor left = torch::ones({2, 10}, torch::kInt64);
    left[0].slice(0, 0, 2).fill_(0);
    try {
        model->forward_train(ids, left, labels);
        ADD_FAILURE() << "left padding accepted";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::unsupported);
        EXPECT_NE(std::string(e.what()).find("right padding"), std::string::npos) << e.what();
    }
    EXPECT_THROW(model->forward_train(ids, torch::ones({2, 9}, torch::kInt64), labels), ct3::Error);
}

TEST(TTTDecodeErrors, RejectsForeignCachesAndBatchChanges) {
    auto model = make_model(tiny("linear", "mamba", 4), 10);
    torch::NoGradGuard no_grad;
    at::Tensor ids = torch::randint(0, k_vocab, {2, 5}, torch::kInt64);
    ct3::KVCache cache = model->make_cache();
    model->forward_tokens(ids, &cache);
    EXPECT_THROW(model->forward_tokens(ids.slice(0, 0, 1), &cache), ct3::Error);  // batch 2 -> 1
    ct3::KVCache llama_like;  // a Transformer's cache with keys in it
    llama_like.keys.push_back(torch::zeros({2, 1, 3, 8}));
    llama_like.values.push_back(torch::zeros({2, 1, 3, 8}));
    EXPECT_THROW(model->forward_tokens(ids, &llama_like), ct3::Error);
    ct3::KVCache plain;  // an empty default cache works: the TTT state is created on first use
    at::Tensor a = model->forward_tokens(ids, &plain);
    EXPECT_EQ(plain.length(), 5);
    EXPECT_LT(max_diff(a, model->forward(ids)), 1e-5);
    EXPECT_THROW(model->forward_tokens(torch::full({1, 2}, k_vocab, torch::kInt64), nullptr), ct3::Error);
}

}  // namespace
