// Data parallel through c10d (gloo, CPU): two ranks equal one process with the same global batch,
// only rank 0 writes the run folder, a signal on rank 0 stops both ranks with a checkpoint that
// they resume from, and a missing peer ends with an error instead of a hang.
//
// The ranks are this test binary again (launch_local execs /proc/self/exe, as ct3-pretrain does),
// running only PretrainDdpChild.Rank, which reads its run from CT3_DDP_TEST_CONFIG: forking a
// process that already ran torch (thread pools, OpenMP) is not safe, exec is.
#include <csignal>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/pretrain/distributed.h"
#include "models/pretrain/model_presets.h"
#include "models/pretrain/pretrain_model.h"
#include "models/pretrain/token_shards.h"
#include "models/pretrain/trainer.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "pretrain_tiny_data.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ct3;
using namespace ct3::pretrain;

namespace {

TrainOptions ddp_options(const fs::path & train_data, const fs::path & held_out, int64_t micro_batch) {
    TrainOptions o = test::tiny_train_options(train_data, held_out);
    o.micro_batch = micro_batch;
    o.max_steps = 16;
    o.eval_every = 8;
    return o;
}

struct LogRows {
    std::vector<double> train, eval;
    std::vector<int64_t> tokens;
};

LogRows read_log(const fs::path & run) {
    LogRows rows;
    std::ifstream in(run / "train_log.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        (j["kind"] == "train" ? rows.train : rows.eval).push_back(j["loss"].get<double>());
        if (j["kind"] == "train") rows.tokens.push_back(j["tokens"].get<int64_t>());
    }
    return rows;
}

// Runs `nproc` ranks of PretrainDdpChild.Rank on `config`; returns the launcher's status.
int launch_ranks(int nproc, const nlohmann::json & config, const fs::path & dir) {
    const fs::path file = dir / "ddp_config.json";
    test::write_file(file, config.dump());
    ::setenv("CT3_DDP_TEST_CONFIG", file.c_str(), 1);
    ::setenv("CT3_DIST_TIMEOUT_S", "30", 1);
    const int status = launch_local(nproc, {"--gtest_filter=PretrainDdpChild.Rank", "--gtest_brief=1"}, 60);
    ::unsetenv("CT3_DDP_TEST_CONFIG");
    ::unsetenv("CT3_DIST_TIMEOUT_S");
    return status;
}

// The "test" preset as the Transformer or a TTT backbone (mamba style, mini-batch 8: several
// mini-batches per 32-token window).
PretrainModelConfig model_config(const TrainOptions & o, const std::string & backbone) {
    PretrainModelConfig c = pretrain_model_config(
        model_preset("test", ModelOverrides{}, read_shard_manifest(o.train_data), o.seq_len), backbone, "mamba");
    if (c.is_ttt()) c.ttt->mini_batch_size = 8;
    return c;
}

void expect_close(const std::vector<double> & a, const std::vector<double> & b, const char * what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(b[i])) << what << " row " << i;
}

}  // namespace

// One rank of a launched job (skipped when run directly).
TEST(PretrainDdpChild, Rank) {
    const char * path = std::getenv("CT3_DDP_TEST_CONFIG");
    if (path == nullptr || std::getenv("WORLD_SIZE") == nullptr) GTEST_SKIP() << "only as a launched rank";
    const auto c = nlohmann::json::parse(test::read_file(path));
    TrainOptions o =
        ddp_options(c["train"].get<std::string>(), c["held_out"].get<std::string>(), c["micro_batch"].get<int64_t>());
    const int64_t stop_at = c.value("stop_at", int64_t{0});
    const PretrainModelConfig config = model_config(o, c.value("backbone", std::string("transformer")));
    if (c.value("expect_refusal", false)) {
        EXPECT_THROW(train(config, o, c["run"].get<std::string>(), false), Error);  // every rank, not only 0
        return;
    }
    const TrainResult r = train(config, o, c["run"].get<std::string>(), false, [&](const StepReport & s) {
        if (!s.eval && s.step == stop_at) std::raise(SIGINT);  // on_step runs on rank 0 only
    });
    EXPECT_EQ(r.interrupted, stop_at > 0);
}

TEST(PretrainDdp, TwoRanksEqualOneProcessAtTheSameGlobalBatch) {
    if (!DataParallel::backend_available(c10::Device(c10::kCPU))) GTEST_SKIP() << "no gloo (install libgloo-dev)";
    test::PretrainTinyData data;
    test::TempDir single, ddp, resumed;
    // One process, micro_batch 8: the reference.
    const TrainOptions o = ddp_options(data.train, data.held_out, 8);
    const LlamaConfig config = model_preset("test", ModelOverrides{}, read_shard_manifest(data.train), o.seq_len);
    const TrainResult ref = train(config, o, single.path(), false);
    const LogRows expected = read_log(single.path());
    ASSERT_EQ(expected.train.size(), 16u);

    // Two ranks of micro_batch 4.
    const nlohmann::json base = {
        {"train", data.train.string()}, {"held_out", data.held_out.string()}, {"micro_batch", 4}};
    nlohmann::json c = base;
    c["run"] = ddp.path().string();
    ASSERT_EQ(launch_ranks(2, c, data.dir.path()), 0);
    const LogRows got = read_log(ddp.path());
    expect_close(got.train, expected.train, "train loss");  // rows written once: same count
    expect_close(got.eval, expected.eval, "eval loss");
    EXPECT_EQ(got.tokens, expected.tokens);  // global token counts
    EXPECT_EQ(got.tokens.back(), ref.tokens);
    auto a = SafetensorsFile::open(single.path() / "checkpoint/model.safetensors");
    auto b = SafetensorsFile::open(ddp.path() / "checkpoint/model.safetensors");
    for (const TensorInfo & t : a->tensors()) {
        EXPECT_LE((a->load(t.name) - b->load(t.name)).abs().max().item<double>(), 1e-5) << t.name;
    }
    const auto saved = nlohmann::json::parse(test::read_file(ddp.path() / "train_options.json"));
    EXPECT_EQ(saved["world_size"], 2);

    // SIGINT on rank 0 at step 5: both ranks stop at the next log point (6) with one checkpoint,
    // then a second launch resumes into the uninterrupted run's losses.
    c["run"] = resumed.path().string();
    c["stop_at"] = 5;
    ASSERT_EQ(launch_ranks(2, c, data.dir.path()), 0);
    EXPECT_EQ(read_log(resumed.path()).train.size(), 6u);
    c["stop_at"] = 0;
    ASSERT_EQ(launch_ranks(2, c, data.dir.path()), 0);
    const LogRows after = read_log(resumed.path());
    ASSERT_EQ(after.train.size(), 16u);
    for (size_t i = 0; i < 16; ++i) EXPECT_EQ(after.train[i], got.train[i]) << "step " << i + 1;

    // A resume with another number of processes is refused: rank 0 refuses, and tells the others.
    c["expect_refusal"] = true;
    EXPECT_EQ(launch_ranks(3, c, data.dir.path()), 0);
    try {
        train(config, ddp_options(data.train, data.held_out, 4), resumed.path(), false);
        FAIL() << "expected a refusal";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("world_size"), std::string::npos) << e.what();
    }
}

// The TTT backbones train through the same data-parallel path: two ranks of a TTT-Linear model equal
// one process at the same global batch (losses and final weights).
TEST(PretrainDdp, TTTLinearTwoRanksEqualOneProcess) {
    if (!DataParallel::backend_available(c10::Device(c10::kCPU))) GTEST_SKIP() << "no gloo (install libgloo-dev)";
    test::PretrainTinyData data;
    test::TempDir single, ddp;
    const TrainOptions o = ddp_options(data.train, data.held_out, 8);
    train(model_config(o, "ttt-linear"), o, single.path(), false);
    const LogRows expected = read_log(single.path());
    ASSERT_EQ(expected.train.size(), 16u);
    EXPECT_LT(expected.train.back(), expected.train.front());  // it trains
    const nlohmann::json c = {{"train", data.train.string()}, {"held_out", data.held_out.string()},
                              {"micro_batch", 4},           {"backbone", "ttt-linear"},
                              {"run", ddp.path().string()}};
    ASSERT_EQ(launch_ranks(2, c, data.dir.path()), 0);
    const LogRows got = read_log(ddp.path());
    expect_close(got.train, expected.train, "train loss");
    expect_close(got.eval, expected.eval, "eval loss");
    auto a = SafetensorsFile::open(single.path() / "checkpoint/model.safetensors");
    auto b = SafetensorsFile::open(ddp.path() / "checkpoint/model.safetensors");
    int compared = 0;
    for (const TensorInfo & t : a->tensors()) {
        EXPECT_LE((a->load(t.name) - b->load(t.name)).abs().max().item<double>(), 1e-5) << t.name;
        compared += t.name.find(".W1") != std::string::npos;
    }
    EXPECT_GT(compared, 0);  // the inner-model weights are among them
}

TEST(PretrainDdp, EnvironmentErrorsNameTheVariable) {
    auto message = [] {
        try {
            DistributedConfig::from_env();
        } catch (const Error & e) {
            return std::string(e.what());
        }
        return std::string();
    };
    ::setenv("WORLD_SIZE", "2", 1);
    ::unsetenv("RANK");
    EXPECT_NE(message().find("RANK"), std::string::npos);
    ::setenv("RANK", "2", 1);  // out of range for 2 ranks
    EXPECT_NE(message().find("RANK='2'"), std::string::npos);
    ::setenv("RANK", "1", 1);
    ::setenv("MASTER_PORT", "http", 1);
    EXPECT_NE(message().find("MASTER_PORT"), std::string::npos);
    ::setenv("MASTER_PORT", "29555", 1);
    const DistributedConfig c = DistributedConfig::from_env();
    EXPECT_EQ(c.rank, 1);
    EXPECT_EQ(c.local_rank, 1);
    EXPECT_EQ(c.world_size, 2);
    EXPECT_EQ(c.master_port, 29555);
    for (const char * v : {"WORLD_SIZE", "RANK", "MASTER_PORT"}) ::unsetenv(v);
    EXPECT_EQ(DistributedConfig::from_env().world_size, 1);
}

TEST(PretrainDdp, MissingPeerTimesOutWithAnError) {
    if (!DataParallel::backend_available(c10::Device(c10::kCPU))) GTEST_SKIP() << "no gloo (install libgloo-dev)";
    // Rank 1 of 2 with nobody serving the store: an error naming the rank and the address.
    DistributedConfig c;
    c.rank = 1;
    c.world_size = 2;
    c.master_port = 1;  // nothing listens on port 1 (and unprivileged code cannot serve it)
    c.timeout_s = 1;
    try {
        DataParallel dp(c, c10::Device(c10::kCPU));
        FAIL() << "expected a timeout";
    } catch (const Error & e) {
        EXPECT_EQ(e.kind(), ErrorKind::unavailable);
        EXPECT_NE(std::string(e.what()).find("rank 1 of 2"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
    }
}
