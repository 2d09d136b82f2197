// load_tokenizer() dispatch for SentencePiece (.model) and WordPiece (vocab.txt) paths. The BPE branch
// needs models/tokenizer_bpe.cpp (another part of the project) to link.
#include "models/error.h"
#include "models/tokenizer.h"
#include "models/tokenizer_sentencepiece.h"
#include "models/tokenizer_wordpiece.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

TEST(LoadTokenizer, PicksSentencePieceForModelFiles) {
    CT3_REQUIRE_SHARED();
    if (!ct3::sentencepiece_shim_isolated()) GTEST_SKIP() << "AddressSanitizer build: SentencePiece unavailable";
    const auto llama = ct3::load_tokenizer(ct3::test::shared_dir() / "models/llama2-tokenizer-32k/tokenizer.model");
    EXPECT_NE(dynamic_cast<ct3::SentencePieceTokenizer *>(llama.get()), nullptr);
    EXPECT_EQ(llama->vocab_size(), 32000u);
    // A folder with tokenizer.model, and a folder whose only *.model is tok512.model.
    const auto folder = ct3::load_tokenizer(ct3::test::shared_dir() / "models/llama2-tokenizer-32k");
    EXPECT_EQ(folder->encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
    const auto stories = ct3::load_tokenizer(ct3::test::shared_dir() / "models/stories260K");
    EXPECT_EQ(stories->vocab_size(), 512u);
}

TEST(LoadTokenizer, PicksWordPieceForVocabTxtAndFolders) {
    CT3_REQUIRE_SHARED();
    const auto dir = ct3::test::shared_dir() / "models/all-MiniLM-L6-v2-tokenizer-only";
    for (const auto & path : {dir / "vocab.txt", dir / "tokenizer.json", dir}) {
        const auto tok = ct3::load_tokenizer(path);
        EXPECT_NE(dynamic_cast<ct3::WordPieceTokenizer *>(tok.get()), nullptr) << path;
        EXPECT_EQ(tok->encode("Hello, world!"), (std::vector<int32_t>{101, 7592, 1010, 2088, 999, 102})) << path;
    }
}

TEST(LoadTokenizer, ErrorsNameThePath) {
    ct3::test::TempDir tmp;
    auto message = [](const fs::path & p) {
        try {
            ct3::load_tokenizer(p);
        } catch (const ct3::Error & e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    const auto missing = tmp.path() / "missing";
    EXPECT_NE(message(missing).find(missing.string()), std::string::npos);
    EXPECT_NE(message(tmp.path()).find("no tokenizer in folder"), std::string::npos);
    ct3::test::write_file(tmp.path() / "weights.bin", "x");
    EXPECT_NE(message(tmp.path() / "weights.bin").find("cannot tell the tokenizer kind"), std::string::npos);
    ct3::test::write_file(tmp.path() / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
    EXPECT_NE(message(tmp.path()).find("'Unigram' is not supported"), std::string::npos) << message(tmp.path());
}
