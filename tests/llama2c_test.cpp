// stories260K (llama2.c legacy .bin) against the project's reference vectors, plus hostile files.
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/llama2c.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

fs::path stories_dir() { return ct3::test::shared_dir() / "models" / "stories260K"; }

nlohmann::json reference() {
    return nlohmann::json::parse(ct3::test::read_file(stories_dir() / "reference_greedy.json"));
}

at::Tensor ids_tensor(const std::vector<int64_t> & ids) {
    return torch::tensor(ids, torch::kInt64).view({1, static_cast<int64_t>(ids.size())});
}

// Expects `fn` to throw ct3::Error whose message mentions `needle`.
template <typename Fn>
void expect_error_mentioning(Fn fn, const std::string & needle) {
    try {
        fn();
        FAIL() << "expected ct3::Error mentioning " << needle;
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Llama2c, HeaderGivesConfig) {
    CT3_REQUIRE_SHARED();
    ct3::LlamaConfig c = ct3::read_llama2c_config(stories_dir() / "stories260K.bin");
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(c.intermediate_size, 172);
    EXPECT_EQ(c.num_hidden_layers, 5);
    EXPECT_EQ(c.num_attention_heads, 8);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.bos_token_id, 1);
    EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
}

TEST(Llama2c, PermuteMatchesHfConvertScript) {
    // 2 heads of size 4, one column: rows (0 1 2 3 | 4 5 6 7) in pair layout become (0 2 1 3 | 4 6 5 7).
    at::Tensor w = torch::arange(8, torch::kFloat32).view({8, 1});
    at::Tensor p = ct3::permute_rope_rows(w, 2).view({8});
    std::vector<float> got(p.data_ptr<float>(), p.data_ptr<float>() + 8);
    EXPECT_EQ(got, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
}

TEST(Llama2c, TeacherForcedLogitsMatchReference) {
    CT3_REQUIRE_SHARED();
    auto model = ct3::load_llama2c(stories_dir() / "stories260K.bin");
    model->eval();
    torch::NoGradGuard no_grad;
    nlohmann::json ref = reference();
    auto greedy = ref.at("greedy_ids_256").get<std::vector<int64_t>>();
    std::vector<int64_t> input = {1, greedy[0], greedy[1], greedy[2]};
    at::Tensor logits = model->forward_tokens(ids_tensor(input), nullptr);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, 4, 512}));
    auto expected_rows = ref.at("logits_first4").get<std::vector<std::vector<double>>>();
    ASSERT_EQ(expected_rows.size(), 4u);
    at::Tensor expected = torch::empty({4, 512}, torch::kFloat64);
    for (int64_t t = 0; t < 4; ++t) {
        ASSERT_EQ(expected_rows[t].size(), 512u);
        for (int64_t v = 0; v < 512; ++v) expected[t][v] = expected_rows[t][v];
    }
    double diff = (logits[0].to(torch::kFloat64) - expected).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4);
}

TEST(Llama2c, GreedyWithKvCacheReproducesReference) {
    CT3_REQUIRE_SHARED();
    auto model = ct3::load_llama2c(stories_dir() / "stories260K.bin");
    model->eval();
    torch::NoGradGuard no_grad;
    auto expected = reference().at("greedy_ids_256").get<std::vector<int64_t>>();
    ASSERT_EQ(expected.size(), 256u);
    // As llama2.c run.c: position 0 is BOS, each step feeds the previous token and takes the argmax.
    ct3::KVCache cache = model->make_cache();
    std::vector<int64_t> generated;
    int64_t token = 1;
    for (int step = 0; step < 256; ++step) {
        at::Tensor logits = model->forward_tokens(ids_tensor({token}), &cache);
        token = logits[0][-1].argmax().item<int64_t>();
        generated.push_back(token);
    }
    EXPECT_EQ(cache.length(), 256);
    EXPECT_EQ(generated, expected);
}

namespace {

// Prefill, single steps and a chunk through the KV cache vs the full-sequence forward: returns
// {max abs difference of the logits, max abs logit}.
std::pair<double, double> incremental_vs_full(ct3::LlamaForCausalLM & model) {
    auto ids = reference().at("greedy_ids_256").get<std::vector<int64_t>>();
    ids.resize(24);
    ids.insert(ids.begin(), 1);
    at::Tensor full = model->forward_tokens(ids_tensor(ids), nullptr);
    // A 10-token prefill, then one token at a time, then a 5-token chunk.
    ct3::KVCache cache = model->make_cache();
    std::vector<at::Tensor> parts;
    size_t pos = 0;
    auto feed = [&](size_t n) {
        std::vector<int64_t> chunk(ids.begin() + pos, ids.begin() + pos + n);
        parts.push_back(model->forward_tokens(ids_tensor(chunk), &cache));
        pos += n;
    };
    feed(10);
    while (pos < 20) feed(1);
    feed(ids.size() - pos);
    at::Tensor incremental = torch::cat(parts, 1);
    EXPECT_EQ(incremental.scalar_type(), torch::kFloat32);  // the interface always returns float32 logits
    if (incremental.sizes() != full.sizes()) return {1e9, 0.0};
    return {(incremental - full).abs().max().item<double>(), full.abs().max().item<double>()};
}

}  // namespace

TEST(Llama2c, IncrementalLogitsEqualFullSequence) {
    CT3_REQUIRE_SHARED();
    auto model = ct3::load_llama2c(stories_dir() / "stories260K.bin");
    model->eval();
    torch::NoGradGuard no_grad;
    // float32 GEMMs of different shapes sum in different orders: with logits of magnitude ~10 the two
    // paths differ by ~1e-5 (1.05e-5 observed), so the float32 bound is relative to the logit scale.
    auto [diff32, scale] = incremental_vs_full(model);
    EXPECT_LE(diff32, 1e-5 * std::max(1.0, scale));
    // In float64 the summation order no longer matters at this level: the absolute 1e-5 bound holds.
    model->to(torch::kFloat64);
    auto [diff64, scale64] = incremental_vs_full(model);
    EXPECT_LE(diff64, 1e-5);
    EXPECT_GT(scale64, 1.0);
}

TEST(Llama2c, TruncatedAndCorruptFilesNameTheFile) {
    CT3_REQUIRE_SHARED();
    std::string bytes = ct3::test::read_file(stories_dir() / "stories260K.bin");
    ct3::test::TempDir tmp;

    fs::path truncated = tmp.path() / "truncated.bin";
    ct3::test::write_file(truncated, bytes.substr(0, bytes.size() - 4));
    expect_error_mentioning([&] { ct3::load_llama2c(truncated); }, "truncated.bin");

    fs::path extra = tmp.path() / "extra.bin";
    ct3::test::write_file(extra, bytes + std::string(4, '\0'));
    expect_error_mentioning([&] { ct3::load_llama2c(extra); }, "implies");

    fs::path tiny = tmp.path() / "tiny.bin";
    ct3::test::write_file(tiny, bytes.substr(0, 10));
    expect_error_mentioning([&] { ct3::load_llama2c(tiny); }, "tiny.bin");

    // Header fields: n_heads = 0, n_kv_heads not dividing n_heads, a huge vocab (must not allocate).
    auto patched = [&](int field, int32_t value, const std::string & name) {
        std::string b = bytes;
        std::memcpy(&b[static_cast<size_t>(field) * 4], &value, 4);
        fs::path p = tmp.path() / name;
        ct3::test::write_file(p, b);
        return p;
    };
    expect_error_mentioning([&] { ct3::load_llama2c(patched(3, 0, "zero_heads.bin")); }, "zero_heads.bin");
    expect_error_mentioning([&] { ct3::load_llama2c(patched(4, 3, "bad_kv.bin")); }, "n_kv_heads");
    expect_error_mentioning([&] { ct3::load_llama2c(patched(5, 2000000000, "huge_vocab.bin")); }, "huge_vocab.bin");
    expect_error_mentioning([&] { ct3::load_llama2c(patched(0, 0x7fffffff, "huge_dim.bin")); }, "huge_dim.bin");
    // An untied classifier declared (vocab < 0) but absent: a size mismatch.
    expect_error_mentioning([&] { ct3::load_llama2c(patched(5, -512, "untied.bin")); }, "implies");

    expect_error_mentioning([&] { ct3::load_llama2c(tmp.path() / "missing.bin"); }, "missing.bin");
}
