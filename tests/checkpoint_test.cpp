// Checkpoint: single-file and sharded (model.safetensors.index.json) checkpoints, and their errors.
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/close_names.h"
#include "models/error.h"
#include "models/safetensors.h"
#include "models/strict_json.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

// Runs `fn` expecting ct3::Error of `kind` whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn && fn, ct3::ErrorKind kind, const std::vector<std::string> & parts) {
    try {
        fn();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        for (const auto & p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
        return;
    }
    ADD_FAILURE() << "expected ct3::Error";
}

class ShardedCheckpoint : public ::testing::Test {
protected:
    void SetUp() override {
        torch::manual_seed(1);
        a_ = torch::randn({4, 3});
        b_ = torch::randn({3}).to(torch::kBFloat16);
        c_ = torch::arange(5);
        ct3::save_safetensors(dir_.path() / "model-00001-of-00002.safetensors", {{"a", a_}, {"b", b_}});
        ct3::save_safetensors(dir_.path() / "model-00002-of-00002.safetensors", {{"c", c_}});
    }
    void write_index(const std::string & weight_map) {
        ct3::test::write_file(dir_.path() / "model.safetensors.index.json",
                              R"({"metadata": {"total_size": 70, "format": "pt"}, "extra": [1, 2], "weight_map": )" +
                                  weight_map + "}");
    }
    const std::string good_map_ = R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                                      "c": "model-00002-of-00002.safetensors"})";
    ct3::test::TempDir dir_;
    at::Tensor a_, b_, c_;
};

}  // namespace

TEST_F(ShardedCheckpoint, LoadsAllTensorsFromFolderOrIndexPath) {
    write_index(good_map_);
    for (const fs::path & path : {dir_.path(), dir_.path() / "model.safetensors.index.json"}) {
        SCOPED_TRACE(path.string());
        const auto ckpt = ct3::Checkpoint::open(path);
        EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "c"}));
        EXPECT_TRUE(torch::equal(ckpt.load("a"), a_));
        EXPECT_TRUE(torch::equal(ckpt.load("b"), b_));
        EXPECT_TRUE(torch::equal(ckpt.load("c"), c_));
        EXPECT_EQ(ckpt.info("b").dtype, "BF16");
        EXPECT_FALSE(ckpt.contains("d"));
    }
}

TEST_F(ShardedCheckpoint, MissingShardIsNotFound) {
    write_index(R"({"a": "model-00001-of-00002.safetensors", "z": "model-00009-of-00009.safetensors"})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::not_found,
                 {"model.safetensors.index.json", "model-00009-of-00009.safetensors", "'z'"});
}

TEST_F(ShardedCheckpoint, TensorMissingFromItsShard) {
    write_index(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format,
                 {"'c'", "model-00001-of-00002.safetensors", "does not contain"});
}

TEST_F(ShardedCheckpoint, ShardTensorsOutsideTheMapAreIgnored) {
    write_index(R"({"a": "model-00001-of-00002.safetensors"})");  // "b" is in the shard but not listed
    const auto ckpt = ct3::Checkpoint::open(dir_.path());
    EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a"}));
}

TEST_F(ShardedCheckpoint, RejectsMalformedIndexes) {
    write_index(R"(["a"])");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format, {"weight_map"});
    write_index(R"({"a": 1})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format, {"'a'"});
    write_index(R"({"a": "../model-00001-of-00002.safetensors"})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format, {"'a'", "beside"});
    write_index(R"({"a": "/etc/passwd"})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format, {"'a'", "beside"});
    write_index(R"({"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"})");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format, {"duplicate", "'a'"});
    ct3::test::write_file(dir_.path() / "model.safetensors.index.json", "{\"weight_map\": {");
    expect_error([&] { ct3::Checkpoint::open(dir_.path()); }, ct3::ErrorKind::bad_format,
                 {"model.safetensors.index.json", "not valid JSON"});
}

TEST_F(ShardedCheckpoint, UnknownTensorNamesTheCheckpoint) {
    write_index(good_map_);
    const auto ckpt = ct3::Checkpoint::open(dir_.path());
    expect_error([&] { ckpt.load("aa"); }, ct3::ErrorKind::not_found, {"'aa'", dir_.path().string(), "close names"});
}

TEST(Checkpoint, SingleFileFolderAndDirectPath) {
    ct3::test::TempDir dir;
    const at::Tensor w = torch::randn({2, 2});
    ct3::save_safetensors(dir.path() / "model.safetensors", {{"w", w}});
    for (const fs::path & path : {dir.path(), dir.path() / "model.safetensors"}) {
        const auto ckpt = ct3::Checkpoint::open(path);
        EXPECT_EQ(ckpt.names(), std::vector<std::string>{"w"});
        EXPECT_TRUE(torch::equal(ckpt.load("w"), w));
    }
}

TEST(Checkpoint, MissingPathOrEmptyFolder) {
    ct3::test::TempDir dir;
    expect_error([&] { ct3::Checkpoint::open(dir.path() / "nope"); }, ct3::ErrorKind::not_found, {"nope"});
    expect_error([&] { ct3::Checkpoint::open(dir.path()); }, ct3::ErrorKind::not_found,
                 {dir.path().string(), "model.safetensors.index.json"});
}

// Fixtures written by HF transformers/safetensors (tests/data/<model>/model.safetensors, with
// golden.json "named_parameters": {name: shape}): every tensor loads with the shape HF reports.
// Re-saving a single-dtype file must reproduce HF's bytes exactly (same key order, compact JSON,
// space padding to 8 bytes); mixed-dtype files differ only because HF orders by dtype first.
TEST(Checkpoint, ReadsAndReproducesHfWrittenFixtures) {
    int n_checked = 0;
    for (const char * model : {"tiny_llama", "tiny_qwen2", "tiny_bert_st", "tiny_mpnet_st"}) {
        const fs::path dir = ct3::test::data_dir() / model;
        if (!fs::exists(dir / "model.safetensors")) continue;
        SCOPED_TRACE(model);
        const auto ckpt = ct3::Checkpoint::open(dir);
        ASSERT_FALSE(ckpt.names().empty());
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        std::set<std::string> dtypes;
        for (const auto & name : ckpt.names()) {
            tensors.emplace_back(name, ckpt.load(name));
            EXPECT_EQ(tensors.back().second.sizes().vec(), ckpt.info(name).shape) << name;
            EXPECT_TRUE(torch::isfinite(tensors.back().second.to(torch::kFloat)).all().item<bool>()) << name;
            dtypes.insert(ckpt.info(name).dtype);
        }
        if (fs::exists(dir / "golden.json")) {
            const auto golden = nlohmann::json::parse(ct3::test::read_file(dir / "golden.json"));
            if (golden.contains("named_parameters")) {
                for (const auto & [name, shape] : golden["named_parameters"].items()) {
                    if (!ckpt.contains(name)) continue;  // tied weights (lm_head) may be saved once
                    EXPECT_EQ(ckpt.info(name).shape, shape.get<std::vector<int64_t>>()) << name;
                }
            }
        }
        if (dtypes.size() == 1) {
            ct3::test::TempDir out;
            const auto hf = ct3::SafetensorsFile::open(dir / "model.safetensors");
            ct3::save_safetensors(out.path() / "resaved.safetensors", tensors, hf->metadata());
            EXPECT_TRUE(ct3::test::read_file(out.path() / "resaved.safetensors") ==
                        ct3::test::read_file(dir / "model.safetensors"))
                << "re-saved bytes differ from the HF-written file";
        }
        ++n_checked;
    }
    if (n_checked == 0) {
        GTEST_SKIP() << "no HF fixtures under " << ct3::test::data_dir() << " (tiny_*/model.safetensors)";
    }
}

TEST(StrictJson, RejectsDuplicatesAtAnyDepthAndAcceptsValid) {
    EXPECT_EQ(ct3::parse_strict_json(R"({"a": {"b": 1, "c": [{"b": 2}]}, "b": 3})", "x")["b"], 3);
    expect_error([] { ct3::parse_strict_json(R"({"a": [{"k": 1, "k": 2}]})", "cfg.json"); },
                 ct3::ErrorKind::bad_format, {"cfg.json", "duplicate", "'k'"});
    expect_error([] { ct3::parse_strict_json("[[[1]]]", "deep.json", 2); }, ct3::ErrorKind::bad_format,
                 {"deep.json", "nested"});
}

TEST(CloseNames, SuggestsPrefixAndTypoMatchesOnly) {
    const std::vector<std::string> names = {"model.norm.weight", "model.embed_tokens.weight", "lm_head.weight"};
    EXPECT_EQ(ct3::close_names("norm.weight", names), std::vector<std::string>{"model.norm.weight"});
    EXPECT_EQ(ct3::close_names("lm_haed.weight", names), std::vector<std::string>{"lm_head.weight"});
    EXPECT_TRUE(ct3::close_names("completely.different", names).empty());
    EXPECT_EQ(ct3::describe_close_names("x", {}), "");
}
