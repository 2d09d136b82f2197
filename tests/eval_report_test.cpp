// The --limit sample reproduces Python's random module (the values below are CPython 3.11's), the
// shards partition a run, the run reader merges shard files and retried items, and the comparison
// of run folders computes its deltas on the items every run scored.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/compare.h"
#include "eval/python_random.h"
#include "eval/report.h"
#include "eval/svg_chart.h"
#include "eval/tasks.h"
#include "models/error.h"
#include "tests/test_support.h"

using namespace ct3::eval;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::vector<size_t> iota(size_t n) {
    std::vector<size_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i;
    return v;
}

void write_lines(const fs::path & file, const std::vector<std::string> & lines) {
    std::ofstream out(file);
    for (const auto & l : lines) out << l << "\n";
}

std::string row(const std::string & task, int i, bool correct, double before = 0, double after = 0,
                double train_ms = 0) {
    json r = {{"id", task + "/" + std::to_string(i)}, {"task", task}, {"correct", correct}, {"correct_alt", correct},
              {"ttt", train_ms > 0}, {"timings_ms", {{"train", train_ms}, {"generate", 100.0}, {"total", train_ms + 100}}}};
    if (before > 0) {
        r["bpb_before"] = before;
        r["bpb_after"] = after;
    }
    return r.dump();
}

std::string slurp(const fs::path & p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(PythonRandom, MatchesCPython) {
    {
        PythonRandom rng(42);
        std::vector<size_t> v = iota(10);
        rng.shuffle(v);
        EXPECT_EQ(v, (std::vector<size_t>{7, 3, 2, 8, 5, 6, 9, 4, 0, 1}));
    }
    {
        PythonRandom rng(42);
        std::vector<size_t> v = iota(1319);  // GSM8K test
        rng.shuffle(v);
        EXPECT_EQ(std::vector<size_t>(v.begin(), v.begin() + 8),
                  (std::vector<size_t>{588, 1214, 57, 906, 1252, 618, 599, 289}));
        EXPECT_EQ(std::vector<size_t>(v.end() - 3, v.end()), (std::vector<size_t>{51, 228, 1309}));
    }
    {
        PythonRandom rng(7);
        std::vector<size_t> v = iota(238);  // MAWPS test
        rng.shuffle(v);
        EXPECT_EQ(std::vector<size_t>(v.begin(), v.begin() + 8),
                  (std::vector<size_t>{99, 150, 180, 112, 124, 172, 182, 164}));
    }
    PythonRandom rng(42);
    EXPECT_EQ(rng.getrandbits(32), 2746317213u);
    EXPECT_EQ(rng.getrandbits(5), 3u);
    EXPECT_DOUBLE_EQ(rng.random(), 0.025010755222666936);
    EXPECT_EQ(PythonRandom((1ull << 40) + 5).getrandbits(32), 2166296868u);  // a two-word seed
    EXPECT_THROW(rng.getrandbits(0), ct3::Error);
}

TEST(EvalSelection, LimitFollowsEachHarnessAndShardsPartition) {
    TaskSpec adapters, lm_eval;
    adapters.limit_shuffles = true;
    // LLM-Adapters: random.seed(42); random.shuffle(items); items[:limit].
    EXPECT_EQ(select_items(adapters, 10, 5, LimitSample::original, 42), (std::vector<size_t>{7, 3, 2, 8, 5}));
    // lm-eval / bigcode: the first documents.
    EXPECT_EQ(select_items(lm_eval, 10, 3, LimitSample::original, 42), (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(select_items(lm_eval, 10, 3, LimitSample::shuffle, 42), (std::vector<size_t>{7, 3, 2}));
    EXPECT_EQ(select_items(adapters, 10, 3, LimitSample::first, 42), (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(select_items(adapters, 4, 0, LimitSample::original, 42), iota(4));  // no limit: all, in order
    EXPECT_EQ(select_items(adapters, 4, 9, LimitSample::original, 42), iota(4));
    // A larger limit extends a smaller one (a run grows by resuming).
    const auto small = select_items(adapters, 1319, 50, LimitSample::original, 42);
    const auto large = select_items(adapters, 1319, 200, LimitSample::original, 42);
    EXPECT_TRUE(std::equal(small.begin(), small.end(), large.begin()));
    // Shards split the selection without overlap or loss.
    std::vector<size_t> merged;
    for (int k = 0; k < 3; ++k) {
        const auto part = select_items(adapters, 1319, 200, LimitSample::original, 42, k, 3);
        merged.insert(merged.end(), part.begin(), part.end());
    }
    std::sort(merged.begin(), merged.end());
    std::vector<size_t> sorted = large;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(merged, sorted);
    EXPECT_THROW(select_items(adapters, 10, 0, LimitSample::original, 42, 3, 3), ct3::Error);
    EXPECT_THROW(parse_limit_sample("random"), ct3::Error);
}

TEST(EvalReport, ReadsShardFilesAndRetriedItems) {
    ct3::test::TempDir dir;
    write_lines(dir.path() / "gsm8k.shard-0-of-2.jsonl", {row("gsm8k", 0, true), row("gsm8k", 2, false)});
    json error_row = {{"id", "gsm8k/1"}, {"task", "gsm8k"}, {"correct", false}, {"error", "server down"}};
    write_lines(dir.path() / "gsm8k.shard-1-of-2.jsonl",
                {error_row.dump(), row("gsm8k", 1, true), "{\"id\": \"gsm8k/3\", \"cut", row("gsm8k", 0, false)});
    write_lines(dir.path() / "mbpp.jsonl", {row("mbpp", 0, false)});
    const auto rows = read_run_rows(dir.path());
    ASSERT_EQ(rows.size(), 2u);
    ASSERT_EQ(rows.at("gsm8k").size(), 3u);  // 0, 2, 1 (retried); the cut line and the duplicate are dropped
    const json s = summarize_rows(rows.at("gsm8k"));
    EXPECT_DOUBLE_EQ(s["accuracy"].get<double>(), 2.0 / 3.0);
    EXPECT_EQ(s["errors"].get<double>(), 0);
    const json summary = summarize_folder(dir.path());
    write_report(dir.path(), summary);
    EXPECT_NE(slurp(dir.path() / "report.md").find("| gsm8k | 3 | 0.667"), std::string::npos);
    EXPECT_EQ(slurp(dir.path() / "time.svg").rfind("<svg", 0), 0u);
}

TEST(EvalCompare, DeltasOnCommonItems) {
    ct3::test::TempDir dir;
    fs::create_directories(dir.path() / "base");
    fs::create_directories(dir.path() / "ttt");
    // base: 4 gsm8k items (1 and 2 right); ttt scored only 0..2 (item 3 unfinished): fixes 0, breaks 1.
    write_lines(dir.path() / "base" / "gsm8k.jsonl", {row("gsm8k", 0, false, 1.0, 1.0), row("gsm8k", 1, true, 2.0, 2.0),
                                                    row("gsm8k", 2, true, 1.0, 1.0), row("gsm8k", 3, true, 1.0, 1.0)});
    write_lines(dir.path() / "ttt" / "gsm8k.jsonl", {row("gsm8k", 0, true, 1.0, 0.8, 900), row("gsm8k", 1, false, 2.0, 1.0, 900),
                                                   row("gsm8k", 2, true, 1.0, 0.9, 900)});
    write_lines(dir.path() / "base" / "mbpp.jsonl", {row("mbpp", 0, false)});  // not in ttt: skipped
    const json c = compare_runs({parse_run_folder("base=" + (dir.path() / "base").string()),
                                 parse_run_folder((dir.path() / "ttt").string())});
    ASSERT_TRUE(c["tasks"].contains("gsm8k"));
    EXPECT_TRUE(c["skipped"].contains("mbpp"));
    const json & g = c["tasks"]["gsm8k"];
    EXPECT_EQ(g["items"].get<int>(), 3);
    EXPECT_NEAR(g["runs"]["base"]["accuracy"].get<double>(), 2.0 / 3.0, 1e-12);
    const json & t = g["runs"]["ttt"];
    EXPECT_NEAR(t["accuracy_delta"].get<double>(), 0.0, 1e-12);
    EXPECT_EQ(t["fixed"].get<int>(), 1);
    EXPECT_EQ(t["broken"].get<int>(), 1);
    EXPECT_NEAR(t["bpb_before"].get<double>(), 4.0 / 3.0, 1e-12);
    EXPECT_NEAR(t["bpb_after"].get<double>(), 2.7 / 3.0, 1e-12);
    EXPECT_NEAR(t["bpb_relative_change"].get<double>(), (2.7 - 4.0) / 4.0, 1e-12);
    EXPECT_NEAR(t["bpb_item_relative_change_mean"].get<double>(), (-0.2 - 0.5 - 0.1) / 3, 1e-12);
    EXPECT_GT(t["bpb_item_relative_change_se"].get<double>(), 0.0);
    EXPECT_NEAR(t["train_seconds"].get<double>(), 0.9, 1e-12);
    EXPECT_EQ(c["overall"]["items"].get<int>(), 3);

    write_comparison(dir.path() / "cmp", c);
    const std::string md = slurp(dir.path() / "cmp" / "compare.md");
    EXPECT_NE(md.find("| gsm8k | 3 | 0.667 | 0.667 (+0.000; +1 / −1) |"), std::string::npos) << md;
    EXPECT_NE(md.find("1.3333 | 0.9000 (-32.5%; -26.67 ± "), std::string::npos) << md;
    EXPECT_NE(md.find("Hardt & Sun"), std::string::npos);
    for (const char * svg : {"accuracy.svg", "bpb.svg", "time.svg"}) {
        const std::string text = slurp(dir.path() / "cmp" / svg);
        EXPECT_EQ(text.rfind("<svg", 0), 0u) << svg;
        EXPECT_NE(text.find("</svg>"), std::string::npos) << svg;
    }
    EXPECT_EQ(json::parse(slurp(dir.path() / "cmp" / "compare.json")), c);

    // Bad input is named.
    EXPECT_THROW(compare_runs({parse_run_folder((dir.path() / "base").string())}), ct3::Error);
    try {
        compare_runs({parse_run_folder((dir.path() / "base").string()), parse_run_folder("x=" + (dir.path() / "nope").string())});
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    }
}

TEST(SvgChart, EscapesAndScales) {
    ChartStyle style;
    style.title = "a < b & c";
    style.max_value = 2.0;
    const std::string svg = bar_chart_svg({{"task", {{"x", {1.0}}, {"y", {4.0}}}}}, style);
    EXPECT_NE(svg.find("a &lt; b &amp; c"), std::string::npos);
    EXPECT_NE(svg.find("width=\"220.0\""), std::string::npos);  // half of the 440-pixel bar
    EXPECT_NE(svg.find("width=\"440.0\""), std::string::npos);  // clipped at max_value
}
