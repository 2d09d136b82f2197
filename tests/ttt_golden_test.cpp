// Golden test of the TTT layers and models against an independent float64 re-statement of the
// reference PyTorch ttt.py (scripts/ttt_golden.py, run once with torch; fixtures in
// tests/data/ttt_golden/<case>/: config.json + model.safetensors in ttt.py's names, golden.safetensors).
// Four cases: TTT-Linear / TTT-MLP × Llama / Mamba backbone, batch 2 × 19 tokens (full mini-batches
// and a trailing partial one), random non-trivial weights. Checked through ct3's loader:
//   * layer 0's TTT layer alone in float64 (dual, primal, chunks starting mid-mini-batch): output and
//     the cache state after the sequence (inner weights at the mini-batch start + accumulators), 1e-9;
//   * the whole model in float64 (every block's output, logits; ct3's RMSNorm takes its statistics in
//     float32 as ttt.py's does, so 2e-6 relative) and in float32 (1e-5 relative, ~1e-4 absolute for
//     these logits of magnitude ~10), dual and primal;
//   * decoding through load_causal_lm's CausalLM with a cache, token by token and in uneven chunks.
// Tolerances are relative to max(1, max |reference|); measured errors are ~1e-15 (layer), ~2e-6 abs
// (float64 model) and ~8e-6 abs (float32), while switching the inner updates off moves the logits by
// 3-6 (golden.json "inner_update_effect_on_logits"), so any inner-loop bug is far outside them.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/model_loader.h"
#include "models/safetensors.h"
#include "models/ttt_loader.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const char * const kCases[] = {"linear_llama", "linear_mamba", "mlp_llama", "mlp_mamba"};

fs::path golden_root() {
    return ct3::test::data_dir() / "ttt_golden";
}

double max_abs(const at::Tensor & t) {
    return t.to(torch::kFloat64).abs().max().item<double>();
}

double max_diff(const at::Tensor & got, const at::Tensor & want) {
    EXPECT_EQ(got.sizes(), want.sizes());
    if (got.sizes() != want.sizes()) return 1e30;
    return (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>();
}

// Relative-to-scale tolerance: `rel` × max(1, max |want|).
double tol(const at::Tensor & want, double rel) {
    return rel * std::max(1.0, max_abs(want));
}

#define EXPECT_CLOSE(got, want, rel, what)                                                                \
    do {                                                                                                  \
        const at::Tensor want_ = (want);                                                                  \
        const double err_ = max_diff((got), want_), tol_ = tol(want_, (rel));                             \
        EXPECT_LE(err_, tol_) << GetParam() << ": " << what << " differs from the reference by " << err_; \
    } while (0)

class TTTGolden : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        folder_ = golden_root() / GetParam();
        if (!fs::exists(folder_ / "golden.safetensors")) {
            GTEST_SKIP() << "fixtures " << folder_.string()
                         << " are absent: run `python3 scripts/ttt_golden.py OUT_DIR` (torch) and copy OUT_DIR/. to "
                         << golden_root().string();
        }
        golden_ = ct3::SafetensorsFile::open(folder_ / "golden.safetensors");
        const auto manifest = nlohmann::json::parse(ct3::test::read_file(golden_root() / "golden.json"));
        case_ = manifest.at("cases").at(GetParam());
        chunks_ = manifest.at("chunks").get<std::vector<int64_t>>();
    }

    at::Tensor golden(const std::string & name) const { return golden_->load(name); }

    ct3::TTTForCausalLM load(c10::ScalarType dtype) {
        return ct3::load_ttt(folder_, c10::Device(c10::DeviceType::CPU), dtype);
    }

    fs::path folder_;
    std::shared_ptr<ct3::SafetensorsFile> golden_;
    nlohmann::json case_;
    std::vector<int64_t> chunks_;
};

}  // namespace

TEST_P(TTTGolden, LoadsReferenceFolder) {
    ct3::TTTForCausalLM model(nullptr);
    try {
        model = ct3::load_ttt(folder_);
    } catch (const ct3::Error & e) {
        FAIL() << GetParam() << ": ct3 cannot load the folder written in ttt.py's names: " << e.what();
    }
    const auto & c = model->config();
    EXPECT_EQ(c.ttt_layer_type, case_.at("ttt_layer_type").get<std::string>());
    EXPECT_EQ(c.backbone, case_.at("backbone").get<std::string>());
    EXPECT_EQ(c.num_attention_heads, case_.at("num_attention_heads").get<int64_t>());
    EXPECT_EQ(c.mini_batch_size, case_.at("mini_batch_size").get<int64_t>());
    EXPECT_DOUBLE_EQ(c.ttt_base_lr, case_.at("ttt_base_lr").get<double>());
    EXPECT_EQ(c.tie_word_embeddings, case_.at("tie_word_embeddings").get<bool>());
}

TEST_P(TTTGolden, LayerMatchesReferenceInFloat64) {
    ct3::TTTForCausalLM model = load(torch::kFloat64);
    auto & layer = *model->layers->ptr<ct3::TTTBlockImpl>(0)->seq_modeling_block;
    torch::NoGradGuard no_grad;
    const at::Tensor x = golden("layer_input");
    const at::Tensor want = golden("layer_output");
    const bool mlp = case_.at("ttt_layer_type") == "mlp";
    // The cache view after the sequence: weights at the start of the current (partial) mini-batch and
    // its gradient accumulators (undefined = zero in ct3).
    auto expect_state = [&](const ct3::TTTState & s, const std::string & how) {
        auto acc = [](const at::Tensor & a, const at::Tensor & like) {
            return a.defined() ? a : torch::zeros_like(like);
        };
        EXPECT_EQ(s.offset, x.size(1));
        EXPECT_CLOSE(s.W1, golden("W1_states"), 1e-9, how << " W1");
        EXPECT_CLOSE(s.b1, golden("b1_states"), 1e-9, how << " b1");
        EXPECT_CLOSE(acc(s.grad_W1, s.W1), golden("W1_grad"), 1e-9, how << " W1 accumulator");
        EXPECT_CLOSE(acc(s.grad_b1, s.b1), golden("b1_grad"), 1e-9, how << " b1 accumulator");
        if (mlp) {
            EXPECT_CLOSE(s.W2, golden("W2_states"), 1e-9, how << " W2");
            EXPECT_CLOSE(s.b2, golden("b2_states"), 1e-9, how << " b2");
            EXPECT_CLOSE(acc(s.grad_W2, s.W2), golden("W2_grad"), 1e-9, how << " W2 accumulator");
            EXPECT_CLOSE(acc(s.grad_b2, s.b2), golden("b2_grad"), 1e-9, how << " b2 accumulator");
        }
    };
    for (ct3::TTTMode mode : {ct3::TTTMode::dual, ct3::TTTMode::primal}) {
        const std::string how = mode == ct3::TTTMode::dual ? "dual" : "primal";
        auto [out, state] = layer.forward_with_state(x, ct3::TTTState{}, mode);
        EXPECT_CLOSE(out, want, 1e-9, how << " layer output");
        expect_state(state, how);
    }
    // Chunks that start and end inside mini-batches continue the state exactly.
    ct3::TTTState state;
    std::vector<at::Tensor> outs;
    int64_t t = 0;
    for (int64_t n : chunks_) {
        auto res = layer.forward_with_state(x.slice(1, t, t + n), std::move(state), ct3::TTTMode::dual);
        outs.push_back(res.first);
        state = std::move(res.second);
        t += n;
    }
    ASSERT_EQ(t, x.size(1));
    EXPECT_CLOSE(torch::cat(outs, 1), want, 1e-9, "chunked layer output");
    expect_state(state, "chunked");
}

TEST_P(TTTGolden, ModelMatchesReferenceInFloat64) {
    ct3::TTTForCausalLM model = load(torch::kFloat64);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = golden("input_ids");
    const at::Tensor hidden = golden("hidden_states");  // [layers + 1, B, T, D]
    // Block by block, so that a mismatch names the first block that differs.
    at::Tensor h = model->embed_tokens->forward(ids);
    EXPECT_CLOSE(h, hidden[0], 1e-12, "embeddings");
    for (size_t i = 0; i < model->layers->size(); ++i) {
        h = model->layers->ptr<ct3::TTTBlockImpl>(i)->forward(hidden[static_cast<int64_t>(i)], ct3::TTTMode::dual);
        EXPECT_CLOSE(h, hidden[static_cast<int64_t>(i) + 1], 2e-6,
                     "block " << i << " output (from the reference's block input)");
    }
    for (ct3::TTTMode mode : {ct3::TTTMode::dual, ct3::TTTMode::primal}) {
        EXPECT_CLOSE(model->forward(ids, mode), golden("logits"), 2e-6,
                     (mode == ct3::TTTMode::dual ? "dual" : "primal") << " logits");
    }
}

TEST_P(TTTGolden, ModelMatchesReferenceInFloat32) {
    ct3::TTTForCausalLM model = load(torch::kFloat32);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = golden("input_ids");
    for (ct3::TTTMode mode : {ct3::TTTMode::dual, ct3::TTTMode::primal}) {
        EXPECT_CLOSE(model->forward(ids, mode), golden("logits"), 1e-5,
                     (mode == ct3::TTTMode::dual ? "dual" : "primal") << " logits");
    }
}

TEST_P(TTTGolden, DecodingMatchesReference) {
    ct3::LoadOptions options;
    options.dtype = "float32";
    std::shared_ptr<ct3::CausalLM> lm = ct3::load_causal_lm(folder_, options);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = golden("input_ids");
    const at::Tensor want = golden("logits");
    const int64_t T = ids.size(1);
    std::vector<int64_t> one_by_one(static_cast<size_t>(T), 1);
    for (const auto & steps : {one_by_one, chunks_}) {
        ct3::KVCache cache = lm->make_cache();
        std::vector<at::Tensor> logits;
        int64_t t = 0;
        for (int64_t n : steps) {
            logits.push_back(lm->forward_tokens(ids.slice(1, t, t + n), &cache));
            t += n;
        }
        ASSERT_EQ(t, T);
        EXPECT_EQ(cache.length(), T);
        EXPECT_CLOSE(torch::cat(logits, 1), want, 1e-5,
                     (steps.size() == static_cast<size_t>(T) ? "token-by-token" : "chunked") << " decode logits");
    }
    // Without a cache: the plain full forward of the CausalLM interface.
    EXPECT_CLOSE(lm->forward_tokens(ids, nullptr), want, 1e-5, "full forward_tokens logits");
}

INSTANTIATE_TEST_SUITE_P(Cases, TTTGolden,
                         ::testing::ValuesIn(std::vector<std::string>(std::begin(kCases), std::end(kCases))),
                         [](const ::testing::TestParamInfo<std::string> & info) { return info.param; });
