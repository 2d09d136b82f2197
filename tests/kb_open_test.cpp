// KnowledgeBase::open on damaged KB folders: every corruption is refused with an error that names
// the file and field, and verify_checksums = false opens a KB whose bytes no longer match.
#include <cstring>
#include <fstream>

#include <faiss/IndexFlat.h>
#include <faiss/index_io.h>
#include <gtest/gtest.h>

#include "kb/builder.h"
#include "kb/knowledge_base.h"
#include "models/error.h"
#include "models/hashed_embedder.h"
#include "tests/kb_build_fixture.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using ct3::kb::KnowledgeBase;
using ct3::kb::OpenOptions;
using nlohmann::json;

namespace {

// One KB built once for the suite; every test damages its own copy.
class KbOpen : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        source_ = new ct3::test::TempDir();
        ct3::test::KbFixture data(source_->path());
        auto options = data.options(source_->path() / "kb");
        options.index_factory = "IVF4,Flat";
        options.on_disk_lists = true;
        ct3::kb::build_kb(options);
    }
    static void TearDownTestSuite() {
        delete source_;
        source_ = nullptr;
    }

    void SetUp() override { fs::copy(source_->path() / "kb", kb(), fs::copy_options::recursive); }

    fs::path kb() const { return tmp_.path() / "kb"; }

    json manifest() const { return json::parse(ct3::test::read_file(kb() / "manifest.json")); }
    void write_manifest(const json & m) const { ct3::test::write_file(kb() / "manifest.json", m.dump(2)); }

    // The message of the ct3::Error that open() throws (fails the test when it opens).
    std::string open_error(const OpenOptions & options = {}) const {
        try {
            KnowledgeBase::open(kb(), options);
        } catch (const ct3::Error & e) {
            return e.what();
        }
        ADD_FAILURE() << "the damaged KB opened";
        return {};
    }

    static ct3::test::TempDir * source_;
    ct3::test::TempDir tmp_;
};

ct3::test::TempDir * KbOpen::source_ = nullptr;

#define EXPECT_CONTAINS(haystack, needle) \
    EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

TEST_F(KbOpen, IntactCopyOpens) {
    auto opened = KnowledgeBase::open(kb());
    EXPECT_EQ(opened->size(), manifest()["count"].get<int64_t>());
    EXPECT_EQ(opened->manifest()["index"]["on_disk"], true);
}

TEST_F(KbOpen, FlippedEmbeddingByteFailsTheChecksumUnlessNotVerified) {
    std::string bytes = ct3::test::read_file(kb() / "embeddings.f32");
    bytes[4 * 64 * 3 + 2] ^= 0x40;
    ct3::test::write_file(kb() / "embeddings.f32", bytes);
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "embeddings.f32");
    EXPECT_CONTAINS(message, "sha256");
    EXPECT_CONTAINS(message, kb().string());

    OpenOptions unchecked;
    unchecked.verify_checksums = false;
    auto opened = KnowledgeBase::open(kb(), unchecked);
    float value;
    std::memcpy(&value, bytes.data() + 4 * 64 * 3, 4);
    EXPECT_EQ(opened->embedding(3)[0], value);  // the damaged bytes are what is served
}

TEST_F(KbOpen, TruncatedTextsIndexIsRefusedEvenWithoutChecksums) {
    std::string bytes = ct3::test::read_file(kb() / "texts.idx");
    ct3::test::write_file(kb() / "texts.idx", bytes.substr(0, bytes.size() - 8));
    OpenOptions unchecked;
    unchecked.verify_checksums = false;
    for (const auto & options : {OpenOptions{}, unchecked}) {
        const std::string message = open_error(options);
        EXPECT_CONTAINS(message, "texts.idx");
        EXPECT_CONTAINS(message, "bytes");
    }
    // Consistent in the manifest but short of count + 1 offsets: the idx check itself.
    ct3::test::refresh_manifest_entry(kb(), "texts.idx");
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "texts.idx");
    EXPECT_CONTAINS(message, "(count");
}

TEST_F(KbOpen, OffsetsOutOfOrderAreRefused) {
    std::string bytes = ct3::test::read_file(kb() / "texts.idx");
    std::swap_ranges(bytes.begin() + 8 * 5, bytes.begin() + 8 * 6, bytes.begin() + 8 * 6);
    ct3::test::write_file(kb() / "texts.idx", bytes);
    ct3::test::refresh_manifest_entry(kb(), "texts.idx");
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "texts.idx");
    EXPECT_CONTAINS(message, "offset");
}

TEST_F(KbOpen, UnsupportedFormatVersionSaysWhatThisBuildReads) {
    json m = manifest();
    m["format_version"] = 2;
    write_manifest(m);
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "manifest.json");
    EXPECT_CONTAINS(message, "format_version 2");
    EXPECT_CONTAINS(message, "reads format_version 1");
}

TEST_F(KbOpen, MissingOrMistypedManifestFieldsAreNamed) {
    const json good = manifest();
    json m = good;
    m.erase("dim");
    write_manifest(m);
    EXPECT_CONTAINS(open_error(), "field 'dim' is missing");
    m = good;
    m["index"]["ntotal"] = "many";
    write_manifest(m);
    EXPECT_CONTAINS(open_error(), "field 'index.ntotal'");
    m = good;
    m["files"].erase("texts.jsonl");
    write_manifest(m);
    EXPECT_CONTAINS(open_error(), "\"texts.jsonl\"");
    m = good;
    m["format"] = "something-else";
    write_manifest(m);
    EXPECT_CONTAINS(open_error(), "field 'format'");
    m = good;
    m["files"]["../escape"] = {{"bytes", 0}, {"sha256", ""}};
    write_manifest(m);
    EXPECT_CONTAINS(open_error(), "outside the folder");
    ct3::test::write_file(kb() / "manifest.json", "{ not json");
    EXPECT_CONTAINS(open_error(), "not valid JSON");
}

TEST_F(KbOpen, IndexDimensionMismatchIsNamed) {
    // A valid FAISS index of another dimension, consistently listed in the manifest.
    faiss::IndexFlatIP other(32);
    const int64_t count = manifest()["count"].get<int64_t>();
    std::vector<float> x(size_t(count * 32), 0.125f);
    other.add(count, x.data());
    faiss::write_index(&other, (kb() / "index.faiss").c_str());
    ct3::test::refresh_manifest_entry(kb(), "index.faiss");
    json m = manifest();
    m["index"]["on_disk"] = false;
    m["files"].erase("index.ivfdata");
    write_manifest(m);
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "index.faiss");
    EXPECT_CONTAINS(message, "d = 32");
    EXPECT_CONTAINS(message, "dim = 64");
}

TEST_F(KbOpen, MissingFilesAndFoldersAreNamed) {
    fs::remove(kb() / "texts.jsonl");
    std::string message = open_error();
    EXPECT_CONTAINS(message, "texts.jsonl");
    EXPECT_CONTAINS(message, "missing");
    fs::remove_all(kb());
    message = open_error();
    EXPECT_CONTAINS(message, "does not exist");
}

TEST_F(KbOpen, ShortIvfDataIsRefusedBeforeMapping) {
    std::string bytes = ct3::test::read_file(kb() / "index.ivfdata");
    ct3::test::write_file(kb() / "index.ivfdata", bytes.substr(0, bytes.size() / 2));
    ct3::test::refresh_manifest_entry(kb(), "index.ivfdata");
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "index.ivfdata");
    EXPECT_CONTAINS(message, "bytes");
}

TEST_F(KbOpen, ReplacedEmbedderStateIsAnIdentityMismatch) {
    ct3::HashedEmbedderConfig config;
    config.dim = 64;
    ct3::HashedEmbedder other(config);
    other.fit({"some other corpus", "entirely"});
    other.save(kb() / "embedder" / "hashed.bin");
    ct3::test::refresh_manifest_entry(kb(), "embedder/hashed.bin");
    const std::string message = open_error();
    EXPECT_CONTAINS(message, "embedder");
    EXPECT_CONTAINS(message, "identity");
    // Without the embedder the KB still opens (retrieval by vector only).
    OpenOptions no_embedder;
    no_embedder.load_embedder = false;
    auto opened = KnowledgeBase::open(kb(), no_embedder);
    EXPECT_THROW(opened->embedder(), ct3::Error);
    EXPECT_FALSE(opened->embedder_identity().contains("state_file"));
    EXPECT_EQ(opened->embedder_identity()["type"], "hashed");
}

TEST_F(KbOpen, DamagedTextLineIsReportedWithItsLineNumber) {
    std::string bytes = ct3::test::read_file(kb() / "texts.jsonl");
    const std::string needle = "{\"id\":5,";
    const size_t at = bytes.find(needle);
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, needle.size(), "{\"id\":9,");
    ct3::test::write_file(kb() / "texts.jsonl", bytes);
    OpenOptions unchecked;
    unchecked.verify_checksums = false;
    auto opened = KnowledgeBase::open(kb(), unchecked);
    EXPECT_NO_THROW(opened->entry(4));
    try {
        opened->entry(5);
        ADD_FAILURE() << "entry 5 parsed";
    } catch (const ct3::Error & e) {
        EXPECT_CONTAINS(e.what(), "texts.jsonl");
        EXPECT_CONTAINS(e.what(), "line 6");
        EXPECT_CONTAINS(e.what(), "'id'");
    }
}

}  // namespace
