// Dataset readers (kb/datasets.h): the exact KB texts of every reader on fixtures and on the real
// files of ../shared/data, record streaming (JSON array and JSON Lines), and the refusal of
// evaluation splits by hash and by name.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kb/datasets.h"
#include "kb/json_records.h"
#include "models/error.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using ct3::Error;
using ct3::ErrorKind;
using ct3::kb::DatasetSpec;
using ct3::kb::Record;
using ct3::test::TempDir;
using ct3::test::write_file;

fs::path fixture(const std::string & name) { return ct3::test::data_dir() / "kb" / name; }

fs::path shared_data() {
    const fs::path shared = ct3::test::shared_dir();
    return shared.empty() ? fs::path(CT3_SOURCE_DIR "/../shared/data") : shared / "data";
}

#define REQUIRE_SHARED_DATA()                                                                                 \
    do {                                                                                                      \
        if (!fs::exists(shared_data() / "gsm8k" / "train.jsonl")) GTEST_SKIP() << "../shared/data not found"; \
    } while (0)

std::vector<Record> read_all(const DatasetSpec & spec, int64_t limit = 0) {
    std::vector<Record> out;
    ct3::kb::read_dataset(spec, [&](Record && r) { out.push_back(std::move(r)); }, limit);
    return out;
}

std::vector<Record> read_token(const std::string & token, const std::string & tmpl = {}) {
    return read_all(ct3::kb::resolve_dataset(token, shared_data(), tmpl));
}

// The ct3::Error thrown by `fn`; fails the test when nothing (or something else) is thrown.
template <typename Fn>
Error error_of(Fn && fn) {
    try {
        fn();
    } catch (const Error & e) {
        return e;
    }
    ADD_FAILURE() << "expected a ct3::Error";
    return Error(ErrorKind::internal, "no error");
}

std::string full_text(const Error & e) { return std::string(e.what()) + " | hint: " + e.hint(); }

// ---------------------------------------------------------------------------------------------
// readers on fixtures

TEST(KbDatasets, CoqaFixtureMatchesLmEvalLayoutPlusGoldAnswer) {
    const auto records = read_token("coqa=" + fixture("coqa.jsonl").string());
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].row, 0);
    EXPECT_EQ(records[0].text,
              "Tom has a red ball. He gives it to Ann.\n\n"
              "Q: What does Tom have?\n\nA: a ball\n\n"
              "Q: What color is it?\n\nA: red\n\n"
              "Q: Who gets it?\n\nA: Ann");
    EXPECT_EQ(records[1].row, 1);
    EXPECT_EQ(records[1].text, "The sky is blue.\n\nQ: What color is the sky?\n\nA: blue");
}

TEST(KbDatasets, CoqaDistributionTurnListsGiveTheSameText) {
    TempDir dir;
    const fs::path file = dir.path() / "coqa_train.json";
    write_file(file, R"([{"story": "S.", "questions": [{"input_text": "q1", "turn_id": 1}, {"input_text": "q2", "turn_id": 2}],
                          "answers": [{"input_text": "a1", "turn_id": 1}, {"input_text": "a2", "turn_id": 2}]}])");
    const auto records = read_token("coqa=" + file.string());
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].text, "S.\n\nQ: q1\n\nA: a1\n\nQ: q2\n\nA: a2");
}

TEST(KbDatasets, CoqaMismatchedTurnsNameTheRow) {
    TempDir dir;
    const fs::path file = dir.path() / "coqa_rows.jsonl";
    write_file(file, "{\"story\": \"A.\", \"questions\": {\"input_text\": [\"q\"]}, \"answers\": {\"input_text\": [\"a\"]}}\n"
                     "{\"story\": \"B.\", \"questions\": {\"input_text\": [\"q1\", \"q2\"]}, \"answers\": {\"input_text\": [\"a\"]}}\n");
    const Error e = error_of([&] { read_token("coqa=" + file.string()); });
    EXPECT_EQ(e.kind(), ErrorKind::bad_format);
    const std::string what = e.what();
    EXPECT_NE(what.find("coqa_rows.jsonl line 2 (record 1)"), std::string::npos) << what;
    EXPECT_NE(what.find("2 questions but 1 answers"), std::string::npos) << what;
}

TEST(KbDatasets, MetaMathQaOrcaMath50kStackFixtures) {
    auto meta = read_token("metamathqa=" + fixture("metamathqa.json").string());
    ASSERT_EQ(meta.size(), 2u);
    EXPECT_EQ(meta[0].text, "What is 2 + 3? 2 + 3 = 5. The answer is: 5");
    EXPECT_EQ(meta[1].text, "Tom has 4 apples and eats 1. How many are left? 4 - 1 = 3.\nThe answer is: 3");

    // The blank second line is skipped and does not count as a record.
    auto orca = read_token("orca_math=" + fixture("orca_math.jsonl").string());
    ASSERT_EQ(orca.size(), 2u);
    EXPECT_EQ(orca[0].text, "A box holds 6 eggs. How many eggs do 3 boxes hold? 3 boxes hold 3 * 6 = 18 eggs.");
    EXPECT_EQ(orca[1].row, 1);
    EXPECT_EQ(orca[1].text, "What is half of 10? Half of 10 is 5.");

    auto m50 = read_token("math_50k=" + fixture("math_50k.json").string());
    ASSERT_EQ(m50.size(), 2u);
    EXPECT_EQ(m50[0].text, "Sam had 5 pens and lost 2. How many pens does he have?\nSam has 5 - 2 = 3 pens. The answer is 3.");
    EXPECT_EQ(m50[1].text, "Add the numbers. 7 and 8 7 + 8 = 15");

    auto stack = read_token("the_stack_python=" + fixture("the_stack_python.jsonl").string());
    ASSERT_EQ(stack.size(), 2u);
    EXPECT_EQ(stack[0].text, "def add(a, b):\n    \"\"\"Add.\"\"\"\n    return a + b\n");
    EXPECT_EQ(stack[1].text, "import os\n\nprint(os.getcwd())\n");
}

TEST(KbDatasets, GenericTemplateOnRecordsFile) {
    const std::string tmpl = "{q.text} -> {answers[0]} ({score}, {ok}, tag {q.tags[1]}) {{id={id}}}";
    const DatasetSpec spec = ct3::kb::resolve_dataset(fixture("records.json").string(), shared_data(), tmpl);
    EXPECT_EQ(spec.name, "records");
    EXPECT_EQ(spec.reader, "template");
    auto first = read_all(spec, 1);
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].text, "How many legs does a cat have? -> 4 (2.5, true, tag count) {id=7}");

    // Record 1 has an empty tags array: the index error names template, field, file and record.
    const Error e = error_of([&] { read_all(spec); });
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::bad_format);
    EXPECT_NE(what.find("records.json record 1"), std::string::npos) << what;
    EXPECT_NE(what.find("q.tags[1]"), std::string::npos) << what;
    EXPECT_NE(what.find(tmpl), std::string::npos) << what;

    auto second = read_all(ct3::kb::resolve_dataset(fixture("records.json").string(), shared_data(), "{q.text} {score}"));
    ASSERT_EQ(second.size(), 2u);
    EXPECT_EQ(second[1].text, "Is {water} wet? -1");  // braces inside values are not template syntax
}

TEST(KbDatasets, MissingReaderFieldNamesFileRowFieldReader) {
    TempDir dir;
    const fs::path file = dir.path() / "orca.jsonl";
    write_file(file, "{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": \"q2\"}\n");
    const Error e = error_of([&] { read_token("orca_math=" + file.string()); });
    EXPECT_EQ(e.kind(), ErrorKind::bad_format);
    const std::string what = e.what();
    for (const char * part : {"orca.jsonl line 2 (record 1)", "'answer'", "orca_math"})
        EXPECT_NE(what.find(part), std::string::npos) << part << " not in: " << what;
}

// ---------------------------------------------------------------------------------------------
// the known datasets on ../shared/data

TEST(KbDatasets, KnownDatasetsOnSharedData) {
    REQUIRE_SHARED_DATA();
    const std::vector<std::string> expected_names = {"gsm8k", "mawps", "math_data", "mbpp", "python_code"};
    EXPECT_EQ(ct3::kb::known_datasets(), expected_names);
    EXPECT_EQ(ct3::kb::available_datasets(shared_data()), expected_names);
    const std::vector<size_t> counts = {7473, 1898, 3260, 374, 4410};
    std::vector<std::vector<Record>> all;
    for (size_t i = 0; i < expected_names.size(); ++i) {
        all.push_back(read_token(expected_names[i]));
        EXPECT_EQ(all.back().size(), counts[i]) << expected_names[i];
        for (size_t r = 0; r < all.back().size(); ++r) ASSERT_EQ(all.back()[r].row, int64_t(r));
    }
    EXPECT_EQ(all[0][0].text,
              "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
              "clips did Natalia sell altogether in April and May? Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72");
    EXPECT_EQ(all[1][0].text,
              "A waiter had 22 customers in his section . If 14 of them left and the rest of his tables had 4 people "
              "at each table , how many tables did he have ? X=((22.0-14.0)/4.0) The answer is 2.");
    EXPECT_EQ(all[2][0].text,
              "Julia played tag with 16 kids on monday. If she played tag with 12 more kids on monday than on tuesday. "
              "How many kids did she play with on tuesday?\nA: She played with 16 kids on Monday. She played with 12 "
              "more kids on Monday than on Tuesday. That means on Tuesday she played with 16 - 12 = 4 kids. The "
              "answer is 4.");
    EXPECT_EQ(all[3][0].text,
              "\"\"\"\nWrite a function to find the longest chain which can be formed from the given set of pairs.\n"
              "assert max_chain_length([Pair(5, 24), Pair(15, 25),Pair(27, 40), Pair(50, 60)], 4) == 3\n\"\"\"\n");
    EXPECT_EQ(all[4][0].text,
              "def getOptionalRelease(self):\n    \"\"\"Return first release in which this feature was recognized.\n\n"
              "    This is a 5-tuple, of the same form as sys.version_info.\n    \"\"\"\n    return self.optional");
}

TEST(KbDatasets, KnownReaderOnAnotherFileUnderTheDataRoot) {
    REQUIRE_SHARED_DATA();
    // NAME=PATH with a relative PATH falls back to the data root.
    const DatasetSpec spec = ct3::kb::resolve_dataset("mbpp=mbpp/mbpp_prompt.jsonl", shared_data());
    EXPECT_EQ(spec.name, "mbpp");
    EXPECT_EQ(read_all(spec).size(), 10u);
}

TEST(KbDatasets, LimitStopsEarlyOnBothFormats) {
    auto orca = read_all(ct3::kb::resolve_dataset("orca_math=" + fixture("orca_math.jsonl").string(), {}), 1);
    ASSERT_EQ(orca.size(), 1u);
    auto meta = read_all(ct3::kb::resolve_dataset("metamathqa=" + fixture("metamathqa.json").string(), {}), 1);
    ASSERT_EQ(meta.size(), 1u);
    EXPECT_EQ(meta[0].text, "What is 2 + 3? 2 + 3 = 5. The answer is: 5");
    // The limit stops before a later malformed record is parsed.
    TempDir dir;
    write_file(dir.path() / "q.jsonl", "{\"question\": \"a\", \"answer\": \"b\"}\n{broken\n");
    EXPECT_EQ(read_all(ct3::kb::resolve_dataset("orca_math=" + (dir.path() / "q.jsonl").string(), {}), 1).size(), 1u);
    EXPECT_THROW(read_all(ct3::kb::resolve_dataset("orca_math=" + (dir.path() / "q.jsonl").string(), {})), Error);
}

// ---------------------------------------------------------------------------------------------
// token resolution errors

TEST(KbDatasets, UnknownTokenListsKnownNamesAndCloseOnes) {
    const Error e = error_of([] { ct3::kb::resolve_dataset("gsm8", "/nonexistent"); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    const std::string text = full_text(e);
    for (const char * name : {"'gsm8k'", "gsm8k, mawps, math_data, mbpp, python_code", "coqa=PATH", "the_stack_python=PATH"})
        EXPECT_NE(text.find(name), std::string::npos) << name << " not in: " << text;
    const Error e2 = error_of([] { ct3::kb::resolve_dataset("cqoa=x.jsonl", "/nonexistent"); });
    EXPECT_NE(full_text(e2).find("'coqa'"), std::string::npos) << full_text(e2);
}

TEST(KbDatasets, MissingFilesAndUserSuppliedWithoutPath) {
    TempDir empty_root;
    const Error e = error_of([&] { ct3::kb::resolve_dataset("gsm8k", empty_root.path()); });
    EXPECT_EQ(e.kind(), ErrorKind::not_found);
    EXPECT_NE(full_text(e).find((empty_root.path() / "gsm8k" / "train.jsonl").string()), std::string::npos);
    EXPECT_NE(full_text(e).find("CT3_DATA_DIR"), std::string::npos);
    EXPECT_TRUE(ct3::kb::available_datasets(empty_root.path()).empty());

    const Error e2 = error_of([&] { ct3::kb::resolve_dataset("coqa=" + (empty_root.path() / "c.jsonl").string(), {}); });
    EXPECT_EQ(e2.kind(), ErrorKind::not_found);
    EXPECT_NE(full_text(e2).find("c.jsonl"), std::string::npos);

    const Error e3 = error_of([&] { ct3::kb::resolve_dataset("metamathqa", empty_root.path()); });
    EXPECT_EQ(e3.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(full_text(e3).find("metamathqa=PATH"), std::string::npos) << full_text(e3);

    const Error e4 = error_of([&] { ct3::kb::resolve_dataset((empty_root.path() / "x.jsonl").string(), {}, "{a}"); });
    EXPECT_EQ(e4.kind(), ErrorKind::not_found);
}

TEST(KbDatasets, PathTokenNeedsTemplate) {
    const Error e = error_of([] { ct3::kb::resolve_dataset(fixture("records.json").string(), {}); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(full_text(e).find("--template '{question} {answer}'"), std::string::npos) << full_text(e);
    // A malformed template fails at resolve time.
    EXPECT_THROW(ct3::kb::resolve_dataset(fixture("records.json").string(), {}, "{q.text"), Error);
}

// ---------------------------------------------------------------------------------------------
// malformed input

TEST(KbDatasets, MalformedJsonLineNamesFileAndLine) {
    TempDir dir;
    const fs::path file = dir.path() / "broken.jsonl";
    write_file(file, "{\"question\": \"a\", \"answer\": \"b\"}\n\n{\"question\": \"c\", \"answer\": }\n");
    const Error e = error_of([&] { read_token("orca_math=" + file.string()); });
    EXPECT_EQ(e.kind(), ErrorKind::bad_format);
    EXPECT_NE(std::string(e.what()).find("broken.jsonl line 3 (record 1)"), std::string::npos) << e.what();
}

TEST(KbDatasets, NonObjectRecordNamesFileAndRow) {
    TempDir dir;
    const fs::path file = dir.path() / "mixed.json";
    write_file(file, R"([{"question": "a", "answer": "b"}, ["not", "an", "object"]])");
    const Error e = error_of([&] { read_token("orca_math=" + file.string()); });
    EXPECT_EQ(e.kind(), ErrorKind::bad_format);
    EXPECT_NE(std::string(e.what()).find("mixed.json record 1 (byte offset 35)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected an object"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------------------------------------
// evaluation splits are refused

const char * const kEvalFiles[] = {
    "gsm8k/test.jsonl",
    "llm_adapters/dataset/AQuA/test.json",
    "llm_adapters/dataset/SVAMP/test.json",
    "llm_adapters/dataset/gsm8k/test.json",
    "llm_adapters/dataset/mathqa/test.json",
    "llm_adapters/dataset/mawps/test.json",
    "llm_adapters/dataset/AQuA/AQuA.json",
    "llm_adapters/dataset/SVAMP/SVAMP.json",
    "llm_adapters/dataset/gsm8k/gsm8k.json",
    "llm_adapters/dataset/mawps/testset.json",
    "mbpp/mbpp_test.jsonl",
    "mbpp/sanitized-mbpp.json",
    "mbpp/mbpp.jsonl",
    "humaneval/HumanEval.jsonl",
    "humaneval/HumanEval.jsonl.gz",
};

TEST(KbTestSplits, EveryEvalFileIsRefusedByHashUnderAnInnocentName) {
    REQUIRE_SHARED_DATA();
    TempDir dir;
    int index = 0;
    for (const char * rel : kEvalFiles) {
        const fs::path original = shared_data() / rel;
        ASSERT_TRUE(fs::exists(original)) << rel;
        const Error direct = error_of([&] { ct3::kb::refuse_test_split(original); });
        EXPECT_EQ(direct.kind(), ErrorKind::invalid_argument) << rel;

        const fs::path copy = dir.path() / ("train_part" + std::to_string(index++) + ".json");
        fs::copy_file(original, copy);
        const Error e = error_of([&] { ct3::kb::refuse_test_split(copy); });
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << rel;
        const std::string what = e.what();
        EXPECT_NE(what.find("sha256 matches ../shared/data/" + std::string(rel)), std::string::npos) << what;
        EXPECT_NE(what.find("must never enter a KB"), std::string::npos) << what;
    }
}

TEST(KbTestSplits, RenamedGsm8kTestIsRefusedThroughEveryTokenForm) {
    REQUIRE_SHARED_DATA();
    TempDir dir;
    const fs::path copy = dir.path() / "my_math_problems.jsonl";
    fs::copy_file(shared_data() / "gsm8k" / "test.jsonl", copy);
    for (const std::string & token : {"gsm8k=" + copy.string(), copy.string()}) {
        const Error e = error_of([&] { ct3::kb::resolve_dataset(token, shared_data(), "{question} {answer}"); });
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << token;
        EXPECT_NE(std::string(e.what()).find("gsm8k/test.jsonl"), std::string::npos) << e.what();
        EXPECT_NE(e.hint().find("gsm8k/train.jsonl"), std::string::npos) << e.hint();
    }
    // The full MBPP file contains the test split; the hint points at the train split.
    const Error mbpp = error_of([&] { ct3::kb::resolve_dataset("mbpp=mbpp/mbpp.jsonl", shared_data()); });
    EXPECT_NE(mbpp.hint().find("mbpp_train.jsonl"), std::string::npos) << mbpp.hint();
}

TEST(KbTestSplits, TestFileNamesAreRefusedWhateverTheContent) {
    TempDir dir;
    for (const char * name : {"test.jsonl", "test.json", "TEST.JSON", "gsm8k_test.jsonl", "my_test.json", "testset.json",
                              "HumanEval.jsonl", "HumanEval-plus.jsonl.gz", "sanitized-mbpp.json", "coqa-dev-v1.0.json",
                              "coqa_validation.jsonl"}) {
        const fs::path file = dir.path() / name;
        write_file(file, "{\"question\": \"fresh content\", \"answer\": \"42\"}\n");
        const Error e = error_of([&] { ct3::kb::resolve_dataset("orca_math=" + file.string(), {}); });
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << name;
        EXPECT_NE(std::string(e.what()).find("evaluation split (by its file name)"), std::string::npos) << e.what();
    }
    // Names that merely contain "test" are fine.
    for (const char * name : {"contest.jsonl", "test_prep.jsonl", "latest.json"}) {
        const fs::path file = dir.path() / name;
        write_file(file, "{\"question\": \"fresh content\", \"answer\": \"42\"}\n");
        EXPECT_NO_THROW(ct3::kb::resolve_dataset("orca_math=" + file.string(), {})) << name;
    }
}

TEST(KbTestSplits, TrainFilesAreAccepted) {
    REQUIRE_SHARED_DATA();
    for (const auto & name : ct3::kb::known_datasets()) EXPECT_NO_THROW(ct3::kb::resolve_dataset(name, shared_data())) << name;
    for (const char * rel : {"mbpp/mbpp_prompt.jsonl", "mbpp/mbpp_validation.jsonl", "llm_adapters/dataset/mawps/validset.json"})
        EXPECT_NO_THROW(ct3::kb::refuse_test_split(shared_data() / rel)) << rel;
}

}  // namespace
