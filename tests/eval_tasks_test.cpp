// The evaluation tasks load from ../shared/data with the original harnesses' prompts, and the
// datasets' own reference solutions score as correct (code through the sandbox).
#include <gtest/gtest.h>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "eval/tasks.h"
#include "kb/json_records.h"
#include "models/error.h"
#include "tests/test_support.h"

using namespace ct3::eval;

namespace {

std::filesystem::path data_root() { return ct3::test::shared_dir() / "data"; }

bool have_python() { return access(sandbox_python().c_str(), X_OK) == 0; }

}  // namespace

TEST(EvalTasks, BuiltinTasksLoadTheirTestSplits) {
    CT3_REQUIRE_SHARED();
    const std::map<std::string, size_t> sizes = {{"gsm8k", 1319}, {"mawps", 238}, {"mathqa", 2985},
                                                 {"mbpp", 500},   {"humaneval", 164}};
    for (const auto & [name, n] : sizes) {
        Task t = load_task(name, data_root());
        EXPECT_EQ(t.items.size(), n) << name;
    }
    Task g = load_task("gsm8k", data_root());
    EXPECT_EQ(g.items[0].prompt.rfind("Question: ", 0), 0u);
    EXPECT_EQ(g.items[0].prompt.substr(g.items[0].prompt.size() - 8), "\nAnswer:");
    EXPECT_EQ(g.items[0].gold, "18");  // Janet's ducks
    Task m = load_task("mathqa", data_root());
    EXPECT_EQ(m.items[0].gold, "A");
    EXPECT_EQ(m.spec.scoring, Scoring::option_letter);
    EXPECT_EQ(m.spec.max_new_tokens, 1024);
    Task s = load_task("svamp", data_root());
    Task a = load_task("aqua", data_root());
    EXPECT_GT(s.items.size(), 0u);
    EXPECT_GT(a.items.size(), 0u);
}

TEST(EvalTasks, ScoringOfGoldShapedOutputs) {
    CT3_REQUIRE_SHARED();
    Task g = load_task("gsm8k", data_root());
    ItemScore s = score_output(g, g.items[0], " Janet sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18\n\nQuestion: next");
    EXPECT_TRUE(s.correct);
    EXPECT_TRUE(s.correct_alt);
    ItemScore flex = score_output(g, g.items[0], " She makes $18 every day.");
    EXPECT_FALSE(flex.correct);  // strict needs ####
    EXPECT_TRUE(flex.correct_alt);
    Task m = load_task("mathqa", data_root());  // gold A
    ItemScore letter = score_output(m, m.items[0], "Answer: A");
    EXPECT_TRUE(letter.correct);
    ItemScore wrong = score_output(m, m.items[0], "Answer: C");
    EXPECT_FALSE(wrong.correct);
    EXPECT_TRUE(wrong.correct_alt);  // the original reads the "A" of "Answer"
    Task w = load_task("mawps", data_root());
    ItemScore num = score_output(w, w.items[0], "The answer is " + w.items[0].gold + ".");
    EXPECT_TRUE(num.correct) << w.items[0].gold;
}

TEST(EvalTasks, ReferenceSolutionsPassAndWrongOnesFailInTheSandbox) {
    CT3_REQUIRE_SHARED();
    if (!have_python()) GTEST_SKIP() << "no " << sandbox_python();
    Task h = load_task("humaneval", data_root());
    Task b = load_task("mbpp", data_root());
    SandboxLimits limits;
    limits.wall_seconds = 5;
    try {
        run_python_sandboxed("pass\n", limits);
    } catch (const ct3::Error & e) {
        GTEST_SKIP() << e.what();
    }
    for (size_t i : {0, 1, 2}) {
        const EvalItem & item = h.items[i];
        const std::string solution = item.document.substr(item.document.find(item.prompt) + item.prompt.size());
        ItemScore ok = score_output(h, item, solution + "\n\ndef unrelated():\n    pass\n", limits);
        EXPECT_TRUE(ok.correct) << item.id << ": " << ok.execution.stderr_text;
        ItemScore bad = score_output(h, item, "\n    return None\n", limits);
        EXPECT_FALSE(bad.correct) << item.id;
    }
    for (size_t i : {0, 1, 2}) {
        const EvalItem & item = b.items[i];
        const std::string code = item.document.substr(item.prompt.size());
        ItemScore ok = score_output(b, item, code + "\nassert False, 'cut at the stop word'\n", limits);
        EXPECT_TRUE(ok.correct) << item.id << ": " << ok.execution.stderr_text;
    }
}

TEST(EvalTasks, BadSpecsAndFilesAreNamed) {
    ct3::test::TempDir tmp;
    try {
        load_task("nope", tmp.path());
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("unknown task 'nope'"), std::string::npos);
    }
    ct3::test::write_file(tmp.path() / "addsub.json", R"([{"instruction": "1+1?", "answer": "two"}])");
    try {
        load_task("addsub=" + (tmp.path() / "addsub.json").string(), tmp.path());
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("field 'answer' is 'two' (expected a number"), std::string::npos);
    }
    ct3::test::write_file(tmp.path() / "mc.json", R"([{"instruction": "pick", "answer": "B"}])");
    Task mc = load_task("mc=" + (tmp.path() / "mc.json").string() + ":letter", tmp.path());
    EXPECT_EQ(mc.spec.scoring, Scoring::option_letter);
    EXPECT_TRUE(score_output(mc, mc.items[0], "The answer is (B)").correct);
}
