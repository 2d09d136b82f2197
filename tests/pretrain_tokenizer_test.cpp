// Tokenizer training through sentencepiece's trainer library (in the dlopen'ed shim): deterministic
// models, Llama-style specials, the trained model loading in ct3's SentencePieceTokenizer, and
// exact round trips of multi-line, indented code (newlines via byte fallback).
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/pretrain/token_shards.h"
#include "models/sentencepiece_trainer.h"
#include "models/tokenizer_sentencepiece.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using ct3::SentencePieceTokenizer;
using ct3::SentencePieceTrainOptions;

namespace {

#define CT3_REQUIRE_SP_TRAIN()                                                                      \
    do {                                                                                            \
        if (!ct3::sentencepiece_shim_isolated())                                                    \
            GTEST_SKIP() << "sanitizer build: RTLD_DEEPBIND is unavailable, so sentencepiece's "    \
                            "protobuf clashes with libtorch's and the trainer cannot run";          \
    } while (0)

const std::string kCode =
    "def add_numbers(a, b):\n"
    "    \"\"\"Adds two numbers.\"\"\"\n"
    "    if a > b:\n"
    "        return a + b\n"
    "\n"
    "\treturn  b  +  a   # tabs, double spaces\n"
    "\n\n"
    "class Total:\n"
    "    def __init__(self):\n"
    "        self.values = [1, 22, 333]\n";

// A small synthetic corpus: English sentences and Python functions (indentation, digits, blank lines).
fs::path write_corpus(const fs::path & dir) {
    const char * names[] = {"Natalia", "Weng", "Betty", "James", "Albert", "Mark", "Julie", "Ken"};
    const char * things[] = {"clips", "apples", "books", "pencils", "marbles", "cookies"};
    std::string jsonl;
    for (int i = 0; i < 240; ++i) {
        const std::string name = names[i % 8], thing = things[(i / 8) % 6];
        std::string text;
        if (i % 3 == 0) {
            text = fmt::format("def count_{}(items):\n    total = 0\n    for item in items:\n        total += {}\n"
                               "    return total\n",
                               thing, i);
        } else {
            text = fmt::format("{} sold {} {} in April, and then half as many in May.\nHow many {} did {} sell "
                               "altogether?\n#### {}",
                               name, 2 * i, thing, thing, name, 3 * i);
        }
        jsonl += nlohmann::json({{"source", "synthetic"}, {"text", text}}).dump() + "\n";
    }
    const fs::path corpus = dir / "corpus.jsonl";
    ct3::test::write_file(corpus, jsonl);
    const fs::path txt = dir / "train.txt";
    ct3::pretrain::write_training_text(corpus, txt);
    return txt;
}

SentencePieceTrainOptions small_options(const fs::path & txt, const fs::path & prefix) {
    SentencePieceTrainOptions o;
    o.input_files = {txt};
    o.model_prefix = prefix;
    o.vocab_size = 400;
    o.num_threads = 2;
    return o;
}

}  // namespace

TEST(SentencePieceTrainer, BpeIsDeterministicAndLlamaShaped) {
    CT3_REQUIRE_SP_TRAIN();
    ct3::test::TempDir tmp;
    const fs::path txt = write_corpus(tmp.path());
    const SentencePieceTrainOptions o = small_options(txt, tmp.path() / "out" / "tok");
    ct3::train_sentencepiece(o);
    const std::string first = ct3::test::read_file(tmp.path() / "out" / "tok.model");
    EXPECT_TRUE(fs::exists(tmp.path() / "out" / "tok.vocab"));
    ct3::train_sentencepiece(o);
    EXPECT_TRUE(ct3::test::read_file(tmp.path() / "out" / "tok.model") == first) << "training is not deterministic";

    SentencePieceTokenizer tok(tmp.path() / "out" / "tok.model");
    EXPECT_EQ(tok.vocab_size(), 400u);
    EXPECT_EQ(tok.unk_id(), 0);
    EXPECT_EQ(tok.bos_id(), 1);
    EXPECT_EQ(tok.eos_id(), 2);
    EXPECT_EQ(tok.pad_id(), -1);
    EXPECT_EQ(tok.raw_piece(3), "<0x00>");  // byte pieces follow the specials, as in Llama
    // Indentation became pieces of its own.
    EXPECT_TRUE(tok.piece_to_id("\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81").has_value());
}

TEST(SentencePieceTrainer, TrainedModelRoundTripsMultiLineCode) {
    CT3_REQUIRE_SP_TRAIN();
    ct3::test::TempDir tmp;
    const fs::path txt = write_corpus(tmp.path());
    for (const char * type : {"bpe", "unigram"}) {
        SentencePieceTrainOptions o = small_options(txt, tmp.path() / type);
        o.model_type = type;
        o.vocab_size = 340;  // unigram cannot reach 400 pieces on this little text
        ct3::train_sentencepiece(o);
        SentencePieceTokenizer tok(tmp.path().string() + "/" + type + ".model");
        ct3::EncodeOptions plain;
        plain.add_special_tokens = false;
        for (const std::string & text : {kCode, std::string("  leading spaces\n"), std::string("caf\xC3\xA9 \xE2\x82\xAC 42\n\n")}) {
            const std::vector<int32_t> ids = tok.encode(text, plain);
            EXPECT_EQ(tok.decode(ids), text) << type;
        }
        // '\n' is never inside a piece: it is the byte piece <0x0A>.
        const std::vector<int32_t> ids = tok.encode("a\nb", plain);
        const int32_t newline = tok.piece_to_id("<0x0A>").value();
        EXPECT_NE(std::find(ids.begin(), ids.end(), newline), ids.end()) << type;
        // Digits are split one per piece.
        for (int32_t id : tok.encode("12345", plain)) {
            const std::string piece = tok.id_to_piece(id);
            EXPECT_LE(piece.find_first_of("0123456789") == std::string::npos ? 0u : piece.size() - (piece[0] == ' '),
                      1u)
                << piece;
        }
        // BOS framing through the Tokenizer interface.
        EXPECT_EQ(tok.encode("x").front(), 1);
    }
}

TEST(SentencePieceTrainer, SampledInputIsDeterministic) {
    CT3_REQUIRE_SP_TRAIN();
    ct3::test::TempDir tmp;
    // 2000 lines of pseudo-random words: different samples learn different merges.
    std::string text;
    uint64_t x = 12345;
    for (int line = 0; line < 2000; ++line) {
        for (int w = 0; w < 6; ++w) {
            const int len = 2 + static_cast<int>((x >> 60) % 5);
            for (int k = 0; k < len; ++k) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                text += static_cast<char>('a' + (x >> 59) % 12);
            }
            text += ' ';
        }
        text += '\n';
    }
    const fs::path txt = tmp.path() / "random.txt";
    ct3::test::write_file(txt, text);
    SentencePieceTrainOptions o = small_options(txt, tmp.path() / "s");
    o.input_sentence_size = 200;  // fewer than the input's lines: sentencepiece samples
    o.random_seed = 7;
    ct3::train_sentencepiece(o);
    const std::string a = ct3::test::read_file(tmp.path() / "s.model");
    ct3::train_sentencepiece(o);
    EXPECT_TRUE(ct3::test::read_file(tmp.path() / "s.model") == a) << "the same seed sampled differently";
    // The sample is a real subset: training on every line learns other merges.
    o.input_sentence_size = 0;
    ct3::train_sentencepiece(o);
    EXPECT_FALSE(ct3::test::read_file(tmp.path() / "s.model") == a) << "input_sentence_size did not sample";
    // Not asserted: that another random_seed draws another sample. With Debian's sentencepiece
    // 0.1.97 it does not (checked: seeds 7 and 8 give identical vocabularies), so the sample is
    // deterministic but fixed; see models/sentencepiece_trainer.h.
}

TEST(SentencePieceTrainer, ErrorsNameTheProblem) {
    CT3_REQUIRE_SP_TRAIN();
    ct3::test::TempDir tmp;
    const fs::path txt = write_corpus(tmp.path());
    auto message = [](const SentencePieceTrainOptions & o) {
        try {
            ct3::train_sentencepiece(o);
        } catch (const ct3::Error & e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    SentencePieceTrainOptions o = small_options(txt, tmp.path() / "e");
    o.vocab_size = 100000;  // far more pieces than this text allows
    EXPECT_NE(message(o).find("sentencepiece training failed"), std::string::npos) << message(o);
    o = small_options(tmp.path() / "nope.txt", tmp.path() / "e");
    EXPECT_NE(message(o).find("nope.txt"), std::string::npos);
    o = small_options(txt, tmp.path() / "e");
    o.model_type = "wordpiece";
    EXPECT_NE(message(o).find("model_type"), std::string::npos);
    o = small_options(txt, tmp.path() / "e");
    o.input_files = {tmp.path() / "a,b.txt"};
    ct3::test::write_file(o.input_files[0], "x\n");
    EXPECT_NE(message(o).find("comma"), std::string::npos);
    EXPECT_FALSE(fs::exists(tmp.path() / "e.model"));
}
