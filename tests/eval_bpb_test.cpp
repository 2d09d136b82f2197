// Bits per byte on the tiny random Llama equals a direct computation from its logits.
#include <cmath>

#include <torch/torch.h>

#include "eval/bpb.h"
#include "models/error.h"
#include "models/llama.h"
#include "models/llama_loader.h"
#include "tests/test_support.h"

namespace {

std::vector<int32_t> ids() { return {1, 17, 300, 42, 5, 99, 250, 3, 77, 11, 8, 400, 23}; }

// -sum log p(ids[t] | ids[s..t-1]) for t in (s, e), straight from one forward of ids[s..e).
double direct_nll(ct3::LlamaForCausalLMImpl & model, const std::vector<int32_t> & v, size_t s, size_t e) {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> chunk(v.begin() + static_cast<long>(s), v.begin() + static_cast<long>(e));
    at::Tensor logits = model.forward_tokens(torch::tensor(chunk).view({1, -1}), nullptr)[0].to(torch::kFloat64);
    double nll = 0;
    for (size_t t = 1; t < chunk.size(); ++t) {
        at::Tensor row = logits[static_cast<int64_t>(t - 1)];
        nll -= (row[chunk[t]] - row.exp().sum().log()).item<double>();
    }
    return nll;
}

}  // namespace

TEST(BitsPerByte, EqualsTheDirectComputationAndTheTrainingLoss) {
    auto model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama");
    const auto v = ids();
    auto r = ct3::eval::score_ids(*model, v, /*bytes=*/40);
    EXPECT_EQ(r.tokens, static_cast<int64_t>(v.size() - 1));
    EXPECT_NEAR(r.nll_nats, direct_nll(*model, v, 0, v.size()), 1e-6);
    EXPECT_NEAR(r.bits_per_byte(), r.nll_nats / std::log(2.0) / 40.0, 1e-12);
    // The HF mean loss times the token count is the same sum.
    at::Tensor input = torch::tensor(std::vector<int64_t>(v.begin(), v.end())).view({1, -1});
    torch::NoGradGuard no_grad;
    const double mean = model->forward_train(input, at::Tensor(), input).loss.item<double>();
    EXPECT_NEAR(r.nll_nats, mean * static_cast<double>(v.size() - 1), 1e-4);
}

TEST(BitsPerByte, WindowsOverlapByOneTokenAndScoreEachTokenOnce) {
    auto model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama");
    const auto v = ids();  // 13 tokens, window 5: [0,5) [4,9) [8,13)
    auto r = ct3::eval::score_ids(*model, v, 40, /*window=*/5);
    EXPECT_EQ(r.tokens, 12);
    const double expected = direct_nll(*model, v, 0, 5) + direct_nll(*model, v, 4, 9) + direct_nll(*model, v, 8, 13);
    EXPECT_NEAR(r.nll_nats, expected, 1e-6);
    EXPECT_THROW(ct3::eval::score_ids(*model, {1}, 1), ct3::Error);
}
