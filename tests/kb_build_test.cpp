// build_kb end to end on small real datasets (JSONL files read by the template reader), the real
// hashed embedder and real FAISS indexes: contents, deduplication, decontamination against the
// evaluation sets, embeddings, index types, overwrite protection, fingerprints and resuming an
// interrupted build.
#include <cctype>
#include <cstring>
#include <stdexcept>

#include <gtest/gtest.h>

#include "kb/builder.h"
#include "kb/knowledge_base.h"
#include "kb/retriever.h"
#include "kb/test_overlap.h"
#include "models/embedder.h"
#include "models/error.h"
#include "models/hashed_embedder.h"
#include "tests/kb_build_fixture.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using ct3::kb::BuildOptions;
using ct3::kb::KnowledgeBase;

namespace {

class KbBuild : public ::testing::Test {
protected:
    ct3::test::TempDir tmp;
    ct3::test::KbFixture data{tmp.path()};

    fs::path out(const std::string & name) const { return tmp.path() / name; }

    // Error message of `f` (which must throw ct3::Error), for substring checks.
    template <typename F>
    static std::string error_of(F && f) {
        try {
            f();
        } catch (const ct3::Error & e) {
            return e.what();
        }
        ADD_FAILURE() << "expected a ct3::Error";
        return {};
    }
};

// Top-1 of a self-query for `ids`, via the Retriever in faiss mode.
void expect_self_top1(const KnowledgeBase & kb, int64_t nprobe, const char * what) {
    ct3::kb::Retriever retriever(kb);
    ct3::kb::SearchParams params;
    params.mode = ct3::kb::SearchMode::faiss;
    params.k = 1;
    params.candidates = 10;
    params.nprobe = nprobe;
    for (int64_t id = 0; id < kb.size(); id += 7) {
        const auto hits = retriever.search(kb.embedding(id), params);
        ASSERT_EQ(hits.size(), 1u) << what;
        EXPECT_EQ(hits[0].id, id) << what << ": entry " << id << " (" << kb.text(id) << ")";
        EXPECT_NEAR(hits[0].similarity, 1.0, 1e-5) << what;
    }
}

TEST_F(KbBuild, BuildsDeduplicatedKbThatOpensWithTheRightEntries) {
    const auto report = ct3::kb::build_kb(data.options(out("kb")));
    const auto & expected = data.expected();
    const auto & m = report.manifest;
    EXPECT_EQ(report.resumed_texts, 0);
    EXPECT_EQ(m["count"], int64_t(expected.size()));
    EXPECT_EQ(m["dim"], 64);
    EXPECT_EQ(m["duplicates"], data.expected_duplicates_alpha() + data.expected_duplicates_beta());
    EXPECT_EQ(m["empty"], data.expected_empty());
    // The fixture's data root holds no evaluation set: checked, nothing dropped.
    EXPECT_EQ(m["decontaminated"], true);
    EXPECT_EQ(m["test_overlap"], 0);
    EXPECT_EQ(m["decontamination"]["test_sets"].size(), 0u);
    ASSERT_EQ(m["datasets"].size(), 2u);
    EXPECT_EQ(m["datasets"][0]["name"], "alpha");
    EXPECT_EQ(m["datasets"][0]["rows"], 300);
    EXPECT_EQ(m["datasets"][0]["duplicates"], data.expected_duplicates_alpha());
    EXPECT_EQ(m["datasets"][0]["empty"], 2);
    EXPECT_EQ(m["datasets"][1]["name"], "beta");
    EXPECT_EQ(m["datasets"][1]["duplicates"], data.expected_duplicates_beta());
    EXPECT_EQ(m["datasets"][1]["first_id"], m["datasets"][0]["entries"]);
    EXPECT_EQ(m["embedder"]["type"], "hashed");
    EXPECT_EQ(m["embedder"]["state_file"], "embedder/hashed.bin");
    EXPECT_FALSE(fs::exists(out("kb.partial")));
    EXPECT_FALSE(fs::exists(out("kb") / "progress.json"));

    auto kb = KnowledgeBase::open(out("kb"));
    ASSERT_EQ(kb->size(), int64_t(expected.size()));
    EXPECT_EQ(kb->dim(), 64);
    EXPECT_EQ(kb->manifest()["count"], kb->size());
    for (int64_t id = 0; id < kb->size(); ++id) {
        const auto entry = kb->entry(id);
        EXPECT_EQ(entry.id, id);
        EXPECT_EQ(entry.text, expected[size_t(id)].text);
        EXPECT_EQ(entry.dataset, expected[size_t(id)].dataset);
        EXPECT_EQ(entry.row, expected[size_t(id)].row);
        EXPECT_EQ(kb->dataset(id), expected[size_t(id)].dataset);
    }
    EXPECT_THROW(kb->entry(kb->size()), ct3::Error);
    EXPECT_THROW(kb->dataset(-1), ct3::Error);

    // The embeddings are the hashed embedder's, fitted on exactly the kept texts.
    ct3::HashedEmbedderConfig config;
    config.dim = 64;
    ct3::HashedEmbedder reference(config);
    const auto texts = data.expected_texts();
    reference.fit(texts);
    const at::Tensor vectors = reference.embed(texts).contiguous();
    EXPECT_EQ(0, std::memcmp(vectors.data_ptr<float>(), kb->embedding(0), texts.size() * 64 * sizeof(float)));
    EXPECT_EQ(kb->embedder_identity(), reference.identity());
    const at::Tensor again = kb->embedder().embed({texts[5]}).contiguous();
    EXPECT_EQ(0, std::memcmp(again.data_ptr<float>(), kb->embedding(5), 64 * sizeof(float)));

    expect_self_top1(*kb, 0, "Flat");
}

TEST_F(KbBuild, SentenceTransformersEmbedderIsRecordedAndRestored) {
    auto options = data.options(out("kb"));
    options.embedder = (ct3::test::data_dir() / "tiny_bert_st").string();
    options.limit_per_dataset = 12;
    options.embed_batch_size = 5;
    const auto report = ct3::kb::build_kb(options);
    EXPECT_EQ(report.manifest["embedder"]["type"], "sentence-transformers");
    EXPECT_EQ(report.manifest["embedder"]["path"], fs::absolute(options.embedder).lexically_normal().string());
    EXPECT_FALSE(report.manifest["embedder"].contains("state_file"));
    auto kb = KnowledgeBase::open(out("kb"));
    auto reference = ct3::load_embedder(options.embedder);
    EXPECT_EQ(kb->embedder_identity(), reference->identity());
    std::vector<std::string> texts;
    for (int64_t id = 0; id < kb->size(); ++id) texts.push_back(kb->text(id));
    const at::Tensor vectors = reference->embed(texts).contiguous();
    const float * got = kb->embedding(0);
    for (int64_t i = 0; i < vectors.numel(); ++i) ASSERT_NEAR(vectors.data_ptr<float>()[i], got[i], 1e-5) << i;
    // A model folder that moved is passed explicitly; another model is refused.
    ct3::kb::OpenOptions open;
    open.embedder_path = (ct3::test::data_dir() / "tiny_mpnet_st").string();
    const std::string message = error_of([&] { KnowledgeBase::open(out("kb"), open); });
    EXPECT_NE(message.find("identity"), std::string::npos) << message;
}

TEST_F(KbBuild, LimitTakesTheFirstRecordsOfEachDataset) {
    auto options = data.options(out("kb"));
    options.limit_per_dataset = 10;
    const auto report = ct3::kb::build_kb(options);
    EXPECT_EQ(report.manifest["datasets"][0]["rows"], 10);
    EXPECT_EQ(report.manifest["datasets"][1]["rows"], 10);
    // beta's first rows repeat alpha rows 100..103, which the limit left out: nothing is a duplicate.
    EXPECT_EQ(report.manifest["count"], 20);
    EXPECT_EQ(report.manifest["duplicates"], 0);
}

TEST_F(KbBuild, IndexTypes) {
    struct Case {
        const char * factory;
        bool on_disk;
        int64_t nprobe;
        const char * type;
    };
    const Case cases[] = {{"IVF4,Flat", false, 4, "ivf"},
                          {"HNSW8", false, 0, "hnsw"},
                          {"IVF4,Flat", true, 4, "ivf"},
                          {"OPQ8,IVF4,Flat", false, 4, "ivf"}};
    int n = 0;
    for (const auto & c : cases) {
        SCOPED_TRACE(c.factory);
        auto options = data.options(out("kb" + std::to_string(n++)));
        options.index_factory = c.factory;
        options.on_disk_lists = c.on_disk;
        const auto report = ct3::kb::build_kb(options);
        EXPECT_EQ(report.manifest["index"]["factory"], c.factory);
        EXPECT_EQ(report.manifest["index"]["type"], c.type);
        EXPECT_EQ(fs::exists(options.save_dir / "index.ivfdata"), c.on_disk);
        EXPECT_EQ(report.manifest["files"].contains("index.ivfdata"), c.on_disk);
        for (bool mmap : {false, true}) {
            ct3::kb::OpenOptions open;
            open.mmap_index = mmap;
            auto kb = KnowledgeBase::open(options.save_dir, open);
            expect_self_top1(*kb, c.nprobe, c.factory);
        }
    }
    // An on-disk KB still opens after its folder moved: index.faiss names index.ivfdata, not a path.
    fs::rename(out("kb2"), out("moved"));
    auto moved = KnowledgeBase::open(out("moved"));
    expect_self_top1(*moved, 4, "moved on-disk IVF");
}

TEST_F(KbBuild, ProductQuantisationFindsItselfAmongTheCandidates) {
    auto options = data.options(out("kb"));
    options.index_factory = "IVF4,PQ16x4";
    const auto report = ct3::kb::build_kb(options);
    EXPECT_EQ(report.manifest["index"]["nlist"], 4);
    auto kb = KnowledgeBase::open(out("kb"));
    ct3::kb::Retriever retriever(*kb);
    ct3::kb::SearchParams params;
    params.mode = ct3::kb::SearchMode::faiss;
    params.k = 50;
    params.nprobe = 4;
    int found = 0, total = 0;
    for (int64_t id = 0; id < kb->size(); id += 5, ++total) {
        const auto hits = retriever.search(kb->embedding(id), params);
        for (const auto & h : hits) found += h.id == id;
    }
    EXPECT_GE(found, total * 9 / 10);  // PQ codes approximate: a vector ranks among its top 50
}

TEST_F(KbBuild, BadIndexOptionsFailBeforeAnyWork) {
    auto options = data.options(out("kb"));
    options.index_factory = "IVF1000,Flat";
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("1000 inverted lists"), std::string::npos);
    options.index_factory = "IVF4,PQ8";  // 256 centroids per sub-vector, 307 texts: fine
    options.train_size = 100;              // ... but not from 100 training vectors
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("100 training vectors"), std::string::npos);
    options.train_size = 0;
    options.index_factory = "NoSuchIndex";
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("NoSuchIndex"), std::string::npos);
    options.index_factory = "Flat";
    options.on_disk_lists = true;
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("--on_disk needs an IVF"), std::string::npos);
    options.on_disk_lists = false;
    options.shard_size = 0;
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("--shard_size"), std::string::npos);
    EXPECT_FALSE(fs::exists(out("kb.partial")));
    EXPECT_FALSE(fs::exists(out("kb")));
}

TEST_F(KbBuild, OverwriteNeedsTheFlagAndOnlyReplacesKnowledgeBases) {
    auto options = data.options(out("kb"));
    ct3::kb::build_kb(options);
    options.limit_per_dataset = 20;
    const std::string message = error_of([&] { ct3::kb::build_kb(options); });
    EXPECT_NE(message.find("already exists"), std::string::npos) << message;
    EXPECT_NE(message.find("--overwrite"), std::string::npos) << message;
    options.overwrite = true;
    const auto report = ct3::kb::build_kb(options);
    EXPECT_EQ(KnowledgeBase::open(out("kb"))->size(), report.manifest["count"].get<int64_t>());
    EXPECT_LT(report.manifest["count"].get<int64_t>(), int64_t(data.expected().size()));
    EXPECT_FALSE(fs::exists(out("kb.old")));

    fs::create_directories(out("precious"));
    ct3::test::write_file(out("precious") / "thesis.txt", "do not delete");
    options.save_dir = out("precious");
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("not a knowledge base"), std::string::npos);
    EXPECT_TRUE(fs::exists(out("precious") / "thesis.txt"));
}

// Throws from the progress callback once `after` texts are done: an interrupted build.
std::function<void(const ct3::kb::BuildProgress &)> interrupt_after(int64_t after) {
    return [after](const ct3::kb::BuildProgress & p) {
        if (p.done >= after) throw std::runtime_error("interrupted");
    };
}

TEST_F(KbBuild, ResumesAnInterruptedBuildToTheSameBytes) {
    auto options = data.options(out("resumed"));
    EXPECT_THROW(ct3::kb::build_kb(options, interrupt_after(128)), std::runtime_error);
    ASSERT_TRUE(fs::exists(out("resumed.partial") / "progress.json"));
    const auto progress = nlohmann::json::parse(ct3::test::read_file(out("resumed.partial") / "progress.json"));
    EXPECT_EQ(progress["shards_done"], 2);
    EXPECT_EQ(progress["rows_done"], 128);
    // A kill in the middle of the next shard leaves a half-appended tail: resuming must cut it off.
    {
        std::ofstream tail(out("resumed.partial") / "embeddings.f32", std::ios::binary | std::ios::app);
        tail << std::string(1000, '\x7f');
    }
    std::vector<ct3::kb::BuildProgress> seen;
    const auto report = ct3::kb::build_kb(options, [&](const ct3::kb::BuildProgress & p) { seen.push_back(p); });
    EXPECT_EQ(report.resumed_texts, 128);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.front().done, 192);
    EXPECT_EQ(seen.front().resumed, 128);
    EXPECT_EQ(seen.back().done, seen.back().total);
    EXPECT_FALSE(fs::exists(out("resumed.partial")));

    const auto clean = ct3::kb::build_kb(data.options(out("clean")));
    EXPECT_EQ(clean.resumed_texts, 0);
    for (const char * file : {"embeddings.f32", "texts.jsonl", "texts.idx", "index.faiss", "embedder/hashed.bin"})
        EXPECT_EQ(ct3::test::read_file(out("resumed") / file), ct3::test::read_file(out("clean") / file)) << file;
    EXPECT_EQ(report.manifest["files"], clean.manifest["files"]);
}

TEST_F(KbBuild, OtherArgumentsRefuseToResumeUnlessRestarted) {
    auto options = data.options(out("kb"));
    EXPECT_THROW(ct3::kb::build_kb(options, interrupt_after(64)), std::runtime_error);
    options.shard_size = 32;
    const std::string message = error_of([&] { ct3::kb::build_kb(options); });
    EXPECT_NE(message.find("other arguments"), std::string::npos) << message;
    EXPECT_NE(message.find("shard_size"), std::string::npos) << message;
    EXPECT_NE(message.find("--restart"), std::string::npos) << message;
    options.restart = true;
    const auto report = ct3::kb::build_kb(options);
    EXPECT_EQ(report.resumed_texts, 0);
    EXPECT_EQ(report.manifest["count"], int64_t(data.expected().size()));
}

TEST_F(KbBuild, UnknownDatasetAndMissingTemplateAreClearErrors) {
    auto options = data.options(out("kb"));
    options.text_template.clear();
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("template"), std::string::npos);
    options = data.options(out("kb"));
    options.datasets = {data.alpha().string(), data.alpha().string()};
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("given twice"), std::string::npos);
    options.datasets = {};
    EXPECT_NE(error_of([&] { ct3::kb::build_kb(options); }).find("--datasets"), std::string::npos);
}

// A data root with a two-record gsm8k/test.jsonl and a train file holding one test item verbatim,
// one with other case and whitespace, one embedding a 13-word piece of a test question, and clean
// records.
class KbDecontamination : public KbBuild {
protected:
    void SetUp() override {
        const fs::path root = tmp.path() / "root";
        const nlohmann::json tests[] = {
            {{"question", "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                          "in May. How many clips did Natalia sell altogether in April and May?"},
             {"answer", "Natalia sold 48/2 = 24 clips in May.\n#### 72"}},
            {{"question", "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
                          "babysitting. How much did she earn?"},
             {"answer", "Weng earns 12/60 = $0.2 per minute.\n#### 10"}}};
        fs::create_directories(root / "gsm8k");
        ct3::test::write_file(root / "gsm8k" / "test.jsonl", tests[0].dump() + "\n" + tests[1].dump() + "\n");
        const std::string q0 = tests[0]["question"], a0 = tests[0]["answer"], q1 = tests[1]["question"];
        std::string shouted = q1;
        for (char & c : shouted) c = char(std::toupper(static_cast<unsigned char>(c)));
        const std::vector<std::pair<std::string, std::string>> train = {
            {"A baker made 30 loaves and sold 12 of them.", "18 loaves are left."},     // clean, row 0
            {q0, a0},                                                                   // verbatim, row 1
            {"Tom has 5 red pens and 7 blue pens.", "He has 12 pens."},                // clean, row 2
            {"  " + shouted + "\n\n", ""},                                              // case/space, row 3
            {"Warm-up: " + q0.substr(0, q0.find(" How many")) + " Count them.", "Ok."},  // 13-gram, row 4
            {"A train travels 60 miles in 1.5 hours.", "Its speed is 40 miles per hour."}};  // clean, row 5
        std::string lines;
        for (const auto & [q, a] : train) lines += nlohmann::json{{"q", q}, {"a", a}}.dump() + "\n";
        ct3::test::write_file(root / "mixed.jsonl", lines);
        for (const size_t row : {size_t(0), size_t(2), size_t(5)})
            clean_.push_back(train[row].first + " " + train[row].second);
    }

    BuildOptions options(const std::string & name) const {
        BuildOptions o;
        o.datasets = {(tmp.path() / "root" / "mixed.jsonl").string()};
        o.data_root = tmp.path() / "root";
        o.text_template = "{q} {a}";
        o.embedder = "hashed:dim=32";
        o.shard_size = 2;
        o.save_dir = out(name);
        return o;
    }

    std::vector<std::string> clean_;
};

TEST_F(KbDecontamination, DropsTestItemsExactlyAndByNgramAndCountsThem) {
    const auto report = ct3::kb::build_kb(options("kb"));
    const auto & m = report.manifest;
    EXPECT_EQ(m["decontaminated"], true);
    EXPECT_EQ(m["test_overlap"], 3);
    EXPECT_EQ(m["count"], 3);
    EXPECT_EQ(m["duplicates"], 0);
    ASSERT_EQ(m["datasets"].size(), 1u);
    EXPECT_EQ(m["datasets"][0]["rows"], 6);
    EXPECT_EQ(m["datasets"][0]["entries"], 3);
    EXPECT_EQ(m["datasets"][0]["test_overlap"], 3);
    EXPECT_EQ(m["datasets"][0]["test_overlap_by_set"], nlohmann::json({{"gsm8k/test.jsonl", 3}}));
    EXPECT_EQ(m["decontamination"]["ngram"], 13);
    ASSERT_EQ(m["decontamination"]["test_sets"].size(), 1u);
    EXPECT_EQ(m["decontamination"]["test_sets"][0], nlohmann::json({{"name", "gsm8k/test.jsonl"}, {"records", 2}}));

    auto kb = KnowledgeBase::open(out("kb"));
    ASSERT_EQ(kb->size(), 3);
    const int64_t rows[] = {0, 2, 5};  // ids stay contiguous; rows name the kept records
    for (int64_t id = 0; id < 3; ++id) {
        EXPECT_EQ(kb->text(id), clean_[size_t(id)]);
        EXPECT_EQ(kb->entry(id).row, rows[id]);
    }
}

TEST_F(KbDecontamination, KeepTestOverlapKeepsThemAndDoesNotResumeADecontaminatedBuild) {
    auto options = this->options("kb");
    EXPECT_THROW(ct3::kb::build_kb(options, interrupt_after(2)), std::runtime_error);
    options.decontaminate = false;  // --keep_test_overlap
    const std::string message = error_of([&] { ct3::kb::build_kb(options); });
    EXPECT_NE(message.find("decontamination"), std::string::npos) << message;
    EXPECT_NE(message.find("--restart"), std::string::npos) << message;
    options.restart = true;
    const auto report = ct3::kb::build_kb(options);
    const auto & m = report.manifest;
    EXPECT_EQ(m["decontaminated"], false);
    EXPECT_EQ(m["test_overlap"], 0);
    EXPECT_EQ(m["count"], 6);
    EXPECT_EQ(m["datasets"][0]["test_overlap"], 0);
    EXPECT_EQ(m["decontamination"]["test_sets"].size(), 0u);
}

// llm_adapters/math_data.json is mostly GSM8K/SVAMP/MAWPS/AQuA test items: its first 400 records
// lose many, and no kept text overlaps any evaluation set of ../shared/data.
TEST(KbDecontaminationShared, MathDataKeepsNoTestItem) {
    CT3_REQUIRE_SHARED();
    const fs::path data_root = ct3::test::shared_dir() / "data";
    if (!fs::exists(data_root / "llm_adapters" / "math_data.json")) GTEST_SKIP() << "math_data.json not found";
    ct3::test::TempDir tmp;
    BuildOptions options;
    options.datasets = {"math_data"};
    options.data_root = data_root;
    options.embedder = "hashed:dim=32";
    options.limit_per_dataset = 400;
    options.save_dir = tmp.path() / "kb";
    const auto report = ct3::kb::build_kb(options);
    const auto & m = report.manifest;
    EXPECT_GT(m["test_overlap"].get<int64_t>(), 100);
    EXPECT_EQ(m["datasets"][0]["rows"], 400);
    EXPECT_EQ(m["count"].get<int64_t>() + m["test_overlap"].get<int64_t>() + m["duplicates"].get<int64_t>() +
                  m["empty"].get<int64_t>(),
              400);
    EXPECT_EQ(m["decontamination"]["test_sets"].size(), ct3::kb::evaluation_sets().size());

    ct3::kb::TestSetIndex index(13);
    ASSERT_GT(index.load_data_root(data_root), 0u);
    auto kb = KnowledgeBase::open(tmp.path() / "kb");
    ASSERT_GT(kb->size(), 0);
    for (int64_t id = 0; id < kb->size(); ++id) {
        const auto overlap = index.check(kb->text(id));
        EXPECT_FALSE(overlap.found()) << "entry " << id << " overlaps " << overlap.test_set << " record "
                                      << overlap.test_row << ": " << overlap.match;
    }
}

}  // namespace
