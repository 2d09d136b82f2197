// Pretraining corpus builder (models/pretrain/corpus.h, kb/test_overlap.h): planted evaluation items
// are caught by the overlap check and never reach the corpus, evaluation files are refused as
// sources, the held-out split and the output are deterministic, and the real train splits of
// ../shared/data leave a corpus with no overlap with any evaluation set.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kb/test_overlap.h"
#include "models/error.h"
#include "models/pretrain/corpus.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ct3::kb::TestSetIndex;
using ct3::pretrain::CorpusOptions;
using ct3::pretrain::CorpusStats;
using ct3::pretrain::TextRoot;
using ct3::test::read_file;
using ct3::test::TempDir;
using ct3::test::write_file;

fs::path shared_data() {
    const fs::path shared = ct3::test::shared_dir();
    return shared.empty() ? fs::path(CT3_SOURCE_DIR "/../shared/data") : shared / "data";
}

#define REQUIRE_SHARED_DATA()                                                                                \
    do {                                                                                                     \
        if (!fs::exists(shared_data() / "gsm8k" / "test.jsonl")) GTEST_SKIP() << "../shared/data not found"; \
    } while (0)

// Prose no evaluation set contains: made-up words from a fixed generator.
std::string fresh_text(uint32_t seed, int words) {
    static const char * syllables[] = {"zor", "bla", "quin", "tep", "mav", "rol", "dux", "fen", "gri", "hov", "jas", "kel"};
    uint32_t state = seed * 2654435761u + 12345u;
    std::string out;
    for (int w = 0; w < words; ++w) {
        if (w) out += (w % 11 == 10) ? ".\n" : " ";
        for (int s = 0; s < 3; ++s) {
            state = state * 1664525u + 1013904223u;
            out += syllables[(state >> 16) % 12];
        }
    }
    return out + ".\n";
}

json first_record(const fs::path & path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return json::parse(line);
}

// The GSM8K test item with other whitespace and case: the normalisation must see through it.
std::string reshaped(const std::string & text) {
    std::string out;
    for (char c : text) {
        if (c == ' ') out += "  \n ";
        else out += char(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
}

std::vector<json> read_jsonl(const fs::path & path) {
    std::vector<json> out;
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
}

class PretrainCorpus : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!fs::exists(shared_data() / "gsm8k" / "test.jsonl")) return;
        index_ = new TestSetIndex(13);
        index_->load_data_root(shared_data());
    }
    static void TearDownTestSuite() {
        delete index_;
        index_ = nullptr;
    }
    static TestSetIndex * index_;
};
TestSetIndex * PretrainCorpus::index_ = nullptr;

// A folder of documents: fresh ones, planted evaluation items, a duplicate, a non-UTF-8 file, a
// file over the size limit and a skipped test folder.
struct PlantedFolder {
    TempDir dir;
    std::string gsm8k_question;
    std::string humaneval_prompt;

    PlantedFolder() {
        const json gsm = first_record(shared_data() / "gsm8k" / "test.jsonl");
        const json he = first_record(shared_data() / "humaneval" / "HumanEval.jsonl");
        gsm8k_question = gsm["question"].get<std::string>();
        humaneval_prompt = he["prompt"].get<std::string>();
        const std::string item = gsm8k_question + " " + gsm["answer"].get<std::string>();
        for (int i = 0; i < 40; ++i) write_file(dir.path() / fmt::format("fresh_{:02}.txt", i), fresh_text(i, 60));
        write_file(dir.path() / "planted_gsm8k.txt", fresh_text(100, 40) + item + "\n" + fresh_text(101, 40));
        write_file(dir.path() / "planted_gsm8k_reshaped.txt", fresh_text(102, 40) + reshaped(gsm8k_question) + fresh_text(103, 5));
        write_file(dir.path() / "planted_humaneval.txt", fresh_text(104, 30) + humaneval_prompt + fresh_text(105, 30));
        write_file(dir.path() / "duplicate.txt", "  " + reshaped(fresh_text(3, 60)));  // of fresh_03.txt
        write_file(dir.path() / "latin1.txt", fresh_text(106, 20) + "caf\xe9\n");
        write_file(dir.path() / "large.txt", fresh_text(107, 2000));
        write_file(dir.path() / "empty.txt", "  ...\n");
        write_file(dir.path() / "notes.md", fresh_text(108, 20));  // other extension: not read
        fs::create_directories(dir.path() / "tests");
        write_file(dir.path() / "tests" / "skipped.txt", fresh_text(109, 20));
    }

    TextRoot root() const { return {dir.path(), {".txt"}, "planted", "CC0-1.0", {"tests"}}; }
};

CorpusOptions planted_options(const TextRoot & root) {
    CorpusOptions o;
    o.data_root = shared_data();
    o.datasets = {};
    o.text_roots = {root};
    o.held_out_fraction = 0.2;
    o.max_file_bytes = 16 * 1024;
    return o;
}

TEST(PretrainOverlap, NormalisationIgnoresCasePunctuationAndWhitespace) {
    EXPECT_EQ(ct3::kb::normalise_text("Hello,  World!\n 48/2=24 Janet\xe2\x80\x99s"), "hello world 48 2 24 janet s");
    EXPECT_EQ(ct3::kb::normalise_text(" \t.,;"), "");
    TestSetIndex index(3);
    index.add_document("the quick brown fox jumps", "toy", 0);
    index.add_document("short item", "toy", 1);
    EXPECT_TRUE(index.check("A QUICK brown-fox, JUMPS!").ngram);  // "quick brown fox"
    EXPECT_EQ(index.check("A QUICK brown-fox, JUMPS!").match, "quick brown fox");
    EXPECT_FALSE(index.check("the quick red fox jumps").found());
    EXPECT_TRUE(index.check("Short   ITEM.").exact);  // shorter than n: exact only
    EXPECT_EQ(index.check("Short   ITEM.").test_row, 1);
    EXPECT_FALSE(index.check("short item here").found());
    EXPECT_THROW(TestSetIndex(0), ct3::Error);

    // Number runs and repetitive n-grams do not identify a test item.
    TestSetIndex numbers(13);
    numbers.add_document("assert f([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]) == 0\nx = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]");
    EXPECT_FALSE(numbers.check("for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14: print(i)").found());
    EXPECT_FALSE(numbers.check("table = (0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0)").found());
    EXPECT_TRUE(numbers.check("def g(): assert f([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) == 0").ngram);
}

TEST_F(PretrainCorpus, OverlapCatchesPlantedTestItemsAndPassesCleanText) {
    REQUIRE_SHARED_DATA();
    ASSERT_EQ(index_->sets().size(), ct3::kb::evaluation_sets().size());
    const json gsm = first_record(shared_data() / "gsm8k" / "test.jsonl");
    const std::string question = gsm["question"].get<std::string>();

    const auto verbatim = index_->check(fresh_text(1, 50) + question + " " + gsm["answer"].get<std::string>() + fresh_text(2, 50));
    EXPECT_TRUE(verbatim.ngram);
    EXPECT_EQ(verbatim.test_set, "gsm8k/test.jsonl");
    EXPECT_EQ(verbatim.test_row, 0);
    const auto changed = index_->check(fresh_text(3, 50) + reshaped(question) + fresh_text(4, 50));
    EXPECT_TRUE(changed.ngram) << "whitespace/case changes must not hide a test item";
    EXPECT_FALSE(changed.match.empty());

    const std::string prompt = first_record(shared_data() / "humaneval" / "HumanEval.jsonl")["prompt"].get<std::string>();
    const auto code = index_->check("# helpers\n" + fresh_text(5, 30) + prompt + "    return False\n");
    EXPECT_TRUE(code.ngram);
    EXPECT_EQ(code.test_set, "humaneval/HumanEval.jsonl");

    const auto exact = index_->check(reshaped(question + "\n" + gsm["answer"].get<std::string>()));
    EXPECT_TRUE(exact.exact);

    EXPECT_FALSE(index_->check(fresh_text(6, 200)).found());
    EXPECT_FALSE(index_->check("Janet keeps ducks; this sentence is about something else entirely, with no answer.").found());
}

TEST_F(PretrainCorpus, PlantedItemsAreDroppedFromTheCorpus) {
    REQUIRE_SHARED_DATA();
    PlantedFolder folder;
    TempDir out;
    const CorpusStats stats = ct3::pretrain::build_corpus(planted_options(folder.root()), out.path());
    ASSERT_EQ(stats.sources.size(), 1u);
    const auto & s = stats.sources[0];
    EXPECT_EQ(s.dropped_overlap, 3);
    EXPECT_EQ(s.dropped_duplicate, 1);
    EXPECT_EQ(s.dropped_empty, 1);
    EXPECT_EQ(s.skipped_non_utf8, 1);
    EXPECT_EQ(s.skipped_too_large, 1);
    EXPECT_EQ(s.documents, 40);
    EXPECT_GT(s.held_out_documents, 0);
    EXPECT_LT(s.held_out_documents, 20);

    std::vector<json> docs = read_jsonl(stats.train_path);
    const std::vector<json> held = read_jsonl(stats.held_out_path);
    EXPECT_EQ(int64_t(held.size()), s.held_out_documents);
    docs.insert(docs.end(), held.begin(), held.end());
    ASSERT_EQ(docs.size(), 40u);
    for (const json & doc : docs) {
        EXPECT_EQ(doc["source"], "planted");
        const std::string text = doc["text"].get<std::string>();
        EXPECT_FALSE(index_->check(text).found()) << text.substr(0, 80);
        EXPECT_EQ(text.find("Janet"), std::string::npos);
        EXPECT_EQ(ct3::pretrain::is_held_out(text, 0, 0.2),
                  std::find(held.begin(), held.end(), doc) != held.end());
    }

    const json manifest = json::parse(read_file(stats.manifest_path));
    EXPECT_EQ(manifest["sources"]["planted"]["dropped_overlap"], 3);
    EXPECT_EQ(manifest["sources"]["planted"]["licence"], "CC0-1.0");
    EXPECT_EQ(manifest["total"]["documents"], 40);
    EXPECT_EQ(manifest["files"]["train.jsonl"]["sha256"], stats.train_sha256);
    EXPECT_EQ(manifest["options"]["ngram"], 13);
    for (const auto & entry : fs::directory_iterator(out.path()))
        EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST_F(PretrainCorpus, RerunIsByteIdenticalAndTheSplitIsStableWhenSourcesAreAdded) {
    REQUIRE_SHARED_DATA();
    PlantedFolder folder;
    TempDir a, b, c;
    CorpusOptions options = planted_options(folder.root());
    ct3::pretrain::build_corpus(options, a.path());
    ct3::pretrain::build_corpus(options, b.path());
    for (const char * name : {"train.jsonl", "held_out.jsonl", "corpus.json"})
        EXPECT_EQ(read_file(a.path() / name), read_file(b.path() / name)) << name;

    // A second source: every document of the first keeps its side of the split.
    TempDir more;
    for (int i = 0; i < 30; ++i) write_file(more.path() / fmt::format("m{}.txt", i), fresh_text(500 + i, 50));
    options.text_roots.push_back({more.path(), {".txt"}, "more", "CC0-1.0", {}});
    ct3::pretrain::build_corpus(options, c.path());
    const std::string held_before = read_file(a.path() / "held_out.jsonl");
    const std::string held_after = read_file(c.path() / "held_out.jsonl");
    EXPECT_EQ(held_after.compare(0, held_before.size(), held_before), 0);
    EXPECT_GT(held_after.size(), held_before.size());

    options.seed = 7;  // another seed, another split
    TempDir d;
    ct3::pretrain::build_corpus(options, d.path());
    EXPECT_NE(read_file(c.path() / "held_out.jsonl"), read_file(d.path() / "held_out.jsonl"));
}

TEST_F(PretrainCorpus, EvaluationFilesAreRefusedAsSources) {
    REQUIRE_SHARED_DATA();
    TempDir out, copy;
    CorpusOptions options;
    options.data_root = shared_data();
    options.datasets = {};
    options.extra_template = "{question}\n{answer}";
    options.extra_datasets = {(shared_data() / "gsm8k" / "test.jsonl").string()};
    try {
        ct3::pretrain::build_corpus(options, out.path());
        FAIL() << "gsm8k/test.jsonl was accepted";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::invalid_argument);
        EXPECT_NE(std::string(e.what()).find("evaluation split"), std::string::npos) << e.what();
    }
    // A renamed copy is refused by its sha256.
    fs::copy_file(shared_data() / "gsm8k" / "test.jsonl", copy.path() / "more_math.jsonl");
    options.extra_datasets = {(copy.path() / "more_math.jsonl").string()};
    EXPECT_THROW(ct3::pretrain::build_corpus(options, out.path()), ct3::Error);
    // So is a text root holding one.
    options.extra_datasets = {};
    options.text_roots = {{copy.path(), {".jsonl"}, "copy", "?", {}}};
    EXPECT_THROW(ct3::pretrain::build_corpus(options, out.path()), ct3::Error);
    EXPECT_TRUE(fs::is_empty(out.path())) << "a refused source must fail the build before anything is written";

    options.text_roots = {};
    options.datasets = {"gsm8k_test"};
    EXPECT_THROW(ct3::pretrain::build_corpus(options, out.path()), ct3::Error);
}

void print_stats(const CorpusStats & stats) {
    for (const auto & s : stats.sources) {
        std::printf("  %-13s %6lld docs %6.2f MB  held out %lld  dropped: overlap %lld, duplicate %lld, empty %lld; "
                    "skipped: non-UTF-8 %lld, too large %lld\n",
                    s.name.c_str(), (long long)s.documents, s.bytes / 1e6, (long long)s.held_out_documents,
                    (long long)s.dropped_overlap, (long long)s.dropped_duplicate, (long long)s.dropped_empty,
                    (long long)s.skipped_non_utf8, (long long)s.skipped_too_large);
        for (const auto & [set, count] : s.overlap_by_test_set)
            std::printf("      overlap with %-40s %lld\n", set.c_str(), (long long)count);
    }
    std::printf("  total %lld docs, %.2f MB, %lld held out, %.2f s\n", (long long)stats.total.documents,
                stats.total.bytes / 1e6, (long long)stats.total.held_out_documents, stats.seconds);
}

// Every written document, re-checked against the index: the count of those that overlap.
int64_t overlapping_documents(const TestSetIndex & index, const CorpusStats & stats) {
    int64_t written = 0, overlapping = 0;
    for (const fs::path & path : {stats.train_path, stats.held_out_path}) {
        std::ifstream in(path);
        std::string line;
        while (std::getline(in, line)) {
            ++written;
            if (index.check(json::parse(line)["text"].get<std::string>()).found()) ++overlapping;
        }
    }
    EXPECT_EQ(written, stats.total.documents);
    return overlapping;
}

// The real train splits: whatever overlaps an evaluation set is dropped (templated word problems
// can share 13-grams with test items), and the written corpus has none left.
TEST_F(PretrainCorpus, RealTrainSplitsLeaveNoOverlap) {
    REQUIRE_SHARED_DATA();
    TempDir out;
    CorpusOptions options;
    options.data_root = shared_data();
    const CorpusStats stats = ct3::pretrain::build_corpus(options, out.path());
    ASSERT_EQ(stats.sources.size(), ct3::pretrain::corpus_datasets().size());
    for (const auto & s : stats.sources) EXPECT_GT(s.documents, 0) << s.name;
    print_stats(stats);
    EXPECT_EQ(overlapping_documents(*index_, stats), 0);
}

// The corpus ct3-tiny is trained on: the train splits plus the Python standard library and its
// documentation (set CT3_PYDOC_SOURCES to the html/_sources folder of python3.11-doc). Skipped
// when either folder is absent.
TEST_F(PretrainCorpus, FullCorpusWithPythonStdlibAndDocs) {
    REQUIRE_SHARED_DATA();
    const char * env = std::getenv("CT3_PYDOC_SOURCES");
    const fs::path docs = env && *env ? fs::path(env) : fs::path("/usr/share/doc/python3.11/html/_sources");
    const fs::path stdlib = "/usr/lib/python3.11";
    if (!fs::is_directory(docs) || !fs::is_directory(stdlib / "json")) GTEST_SKIP() << "no Python stdlib/docs here";
    TempDir out;
    CorpusOptions options;
    options.data_root = shared_data();
    options.text_roots = {ct3::pretrain::python_stdlib_root(stdlib), ct3::pretrain::python_docs_root(docs)};
    const CorpusStats stats = ct3::pretrain::build_corpus(options, out.path());
    print_stats(stats);
    EXPECT_GT(stats.sources[6].documents, 500);  // python-stdlib
    EXPECT_GT(stats.sources[7].documents, 300);  // python-docs
    EXPECT_EQ(overlapping_documents(*index_, stats), 0);
}

}  // namespace
