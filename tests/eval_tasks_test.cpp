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

// CoQA from a fixture written from Stanford's coqa-dev-v1.0.json schema (CoQA itself is not in
// ../shared/data): lm-eval 0.4.7's doc_to_text / doc_to_target and its em/f1.
TEST(EvalTasks, CoqaPromptsGoldsAndScores) {
    const auto fixture = ct3::test::data_dir() / "eval" / "coqa_dev_fixture.json";
    Task t = load_task("coqa=" + fixture.string(), {});
    EXPECT_EQ(t.spec.scoring, Scoring::coqa);
    EXPECT_EQ(t.spec.stop_strings, std::vector<std::string>{"\nQ:"});
    ASSERT_EQ(t.items.size(), 2u);
    const EvalItem & first = t.items[0];
    EXPECT_EQ(first.id, "coqa/fixture-story-1");
    EXPECT_EQ(first.prompt,
              "Once upon a time, in a barn near a farm house, there lived a little white kitten named Cotton. Cotton "
              "lived high up in a nice warm place above the barn.\n\nQ: What color was Cotton?\n\nA: white\n\nQ: "
              "Where did she live?\n\nA:");
    // The last turn's answer, then additional answers that differ case-insensitively ("In a barn" does not).
    EXPECT_EQ(first.golds, (std::vector<std::string>{"in a barn", "above the barn"}));
    EXPECT_EQ(first.document, first.prompt + " in a barn");
    EXPECT_EQ(t.items[1].golds, std::vector<std::string>{"It was formally established in 1475"});

    // Prediction = first line of the output cut at "\nQ:"; leave-one-out over two golds: each gold is
    // scored against the other, so "in a barn" gets em 0.5 (right against one, wrong against the other).
    ItemScore s = score_output(t, first, " in a barn\n\nQ: Who?");
    EXPECT_EQ(s.extracted, "in a barn");
    EXPECT_DOUBLE_EQ(s.em, 0.5);
    EXPECT_DOUBLE_EQ(s.f1, 0.5 * (1.0 + 2.0 * 0.5 * 0.5 / 1.0));  // f1("in a barn", "above the barn") = 0.5
    EXPECT_FALSE(s.correct);
    // One gold: SQuAD normalisation (articles, punctuation, case) and token f1.
    ItemScore exact = score_output(t, t.items[1], " It was formally established in 1475.");
    EXPECT_DOUBLE_EQ(exact.em, 1.0);
    EXPECT_TRUE(exact.correct);
    ItemScore partial = score_output(t, t.items[1], "in 1475");
    EXPECT_DOUBLE_EQ(partial.em, 0.0);
    EXPECT_NEAR(partial.f1, 2 * (2.0 / 2) * (2.0 / 6) / (1 + 2.0 / 6), 1e-12);

    // Hugging Face EleutherAI/coqa rows (JSON Lines, turns as {"input_text": [...]}) give the same items.
    ct3::test::TempDir tmp;
    ct3::test::write_file(tmp.path() / "coqa.jsonl",
                          R"({"story": "S.", "questions": {"input_text": ["Q1?", "Q2?"]}, "answers": {"input_text": ["a1", "a2"]}, "additional_answers": {"0": {"input_text": ["x", "A2"]}}})"
                          "\n");
    Task hf = load_task("coqa=" + (tmp.path() / "coqa.jsonl").string(), {});
    ASSERT_EQ(hf.items.size(), 1u);
    EXPECT_EQ(hf.items[0].prompt, "S.\n\nQ: Q1?\n\nA: a1\n\nQ: Q2?\n\nA:");
    EXPECT_EQ(hf.items[0].golds, std::vector<std::string>{"a2"});
    // Absent data and malformed stories are named.
    try {
        load_task("coqa", tmp.path());
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("coqa-dev-v1.0.json"), std::string::npos) << e.what();
    }
    ct3::test::write_file(tmp.path() / "bad.jsonl", R"({"story": "S.", "questions": {"input_text": ["Q1?"]}, "answers": {"input_text": []}})"
                                                    "\n");
    EXPECT_THROW(load_task("coqa=" + (tmp.path() / "bad.jsonl").string(), {}), ct3::Error);
}
