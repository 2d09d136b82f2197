// WordPiece (BERT/MiniLM) tokenizer on the real all-MiniLM-L6-v2 vocabulary. Expected ids were
// derived by hand from vocab.txt (id = line number - 1), e.g. `grep -nxF hello vocab.txt` -> 7593.
#include <random>

#include "models/error.h"
#include "models/tokenizer_wordpiece.h"
#include "models/unicode_text.h"
#include "tests/test_support.h"
#include "tests/tokenizer_golden.h"

namespace fs = std::filesystem;
using ct3::WordPieceTokenizer;
using Ids = std::vector<int32_t>;

namespace {

fs::path minilm_dir() { return ct3::test::shared_dir() / "models/all-MiniLM-L6-v2-tokenizer-only"; }

std::unique_ptr<WordPieceTokenizer> minilm() { return ct3::load_wordpiece_tokenizer(minilm_dir() / "vocab.txt"); }

std::string what_of(const std::function<void()> & f) {
    try {
        f();
    } catch (const ct3::Error & e) {
        return e.what();
    }
    return "(no ct3::Error thrown)";
}

}  // namespace

TEST(UnicodeText, DecodesHostileUtf8ToReplacement) {
    using ct3::unicode::decode_utf8;
    EXPECT_EQ(decode_utf8("a\xC3\xA9"), U"a\u00E9");
    EXPECT_EQ(decode_utf8("\xF0\x9F\x98\x80"), U"\U0001F600");
    EXPECT_EQ(decode_utf8("\xFF" "a"), U"\uFFFDa");
    EXPECT_EQ(decode_utf8("\xC3"), U"\uFFFD");                // truncated
    EXPECT_EQ(decode_utf8("\xC0\xAF"), U"\uFFFD\uFFFD");      // overlong '/'
    EXPECT_EQ(decode_utf8("\xED\xA0\x80"), U"\uFFFD\uFFFD\uFFFD");  // encoded surrogate
    EXPECT_EQ(ct3::unicode::encode_utf8(U"h\u00E9\U0001F600"), "h\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(UnicodeText, CategoriesAndMappings) {
    using namespace ct3::unicode;
    EXPECT_TRUE(is_punctuation(U'$'));       // ASCII symbols count for BERT
    EXPECT_TRUE(is_punctuation(U'\u00BF'));  // inverted question mark, Po
    EXPECT_TRUE(is_punctuation(U'\u3002'));  // ideographic full stop
    EXPECT_FALSE(is_punctuation(U'a'));
    EXPECT_FALSE(is_punctuation(U'\u00E9'));
    EXPECT_TRUE(is_other(U'\u200B'));        // zero-width space, Cf
    EXPECT_TRUE(is_other(0x0085));
    EXPECT_FALSE(is_other(U'\u00E9'));
    EXPECT_TRUE(is_white_space(0x3000));
    EXPECT_TRUE(is_cjk_ideograph(U'\u4E2D'));
    EXPECT_FALSE(is_cjk_ideograph(U'\u3042'));  // hiragana is not isolated by BERT
    std::u32string s;
    for (char32_t c : std::u32string(U"R\u00C9SUM\u00C9 \u0301x \u1E69")) append_accent_stripped(s, c);
    EXPECT_EQ(s, U"RESUME x s");
    s.clear();
    append_accent_stripped(s, 0xD55C);  // Hangul "han" -> three conjoining jamo
    EXPECT_EQ(s, U"\u1112\u1161\u11AB");
    s.clear();
    for (char32_t c : std::u32string(U"A\u0130\u03A3\u00DF")) append_lowercase(s, c);
    EXPECT_EQ(s, U"ai\u0307\u03C3\u00DF");
}

TEST(WordPiece, LoadsMiniLMSettings) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->vocab_size(), 30522u);
    EXPECT_EQ(tok->pad_id(), 0);
    EXPECT_EQ(tok->unk_id(), 100);
    EXPECT_EQ(tok->cls_id(), 101);
    EXPECT_EQ(tok->sep_id(), 102);
    EXPECT_EQ(tok->mask_id(), 103);
    EXPECT_EQ(tok->bos_id(), -1);  // BERT has no BOS/EOS
    EXPECT_EQ(tok->eos_id(), -1);
    EXPECT_EQ(tok->config().model_max_length, 512u);
    EXPECT_TRUE(tok->config().lowercase);
    for (int32_t id : {0, 100, 101, 102, 103}) EXPECT_TRUE(tok->is_special(id)) << id;
    EXPECT_FALSE(tok->is_special(7592));
}

TEST(WordPiece, EncodesHandCheckedIds) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->encode("Hello, world!"), (Ids{101, 7592, 1010, 2088, 999, 102}));
    // Lower-casing, accent stripping, punctuation split, ## continuations.
    EXPECT_EQ(tok->encode("The unaffable Caf\xC3\xA9's na\xC3\xAFve R\xC3\x89SUM\xC3\x89"),
              (Ids{101, 1996, 14477, 20961, 3468, 7668, 1005, 1055, 15743, 13746, 102}));
    EXPECT_EQ(tok->encode("\xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1 \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",
                          {false, 0}),
              (Ids{1179, 29728, 29723, 29721, 14608, 1194, 16856, 10325, 25529, 15290, 22919}));
    // CJK ideographs become words of their own even without spaces; unknown characters give [UNK].
    EXPECT_EQ(tok->encode("hello\xE4\xB8\xAD\xE5\x9B\xBDworld", {false, 0}), (Ids{7592, 1746, 1799, 2088}));
    EXPECT_EQ(tok->encode("hi \xF0\x9F\x98\x80", {false, 0}), (Ids{7632, 100}));
    // Control characters and zero-width spaces vanish; tabs and newlines separate words.
    EXPECT_EQ(tok->encode("he\x01llo\tworld\xE2\x80\x8B!", {false, 0}), (Ids{7592, 2088, 999}));
    EXPECT_EQ(tok->encode("$5% u.s.a", {false, 0}), (Ids{1002, 1019, 1003, 1057, 1012, 1055, 1012, 1037}));
    EXPECT_EQ(tok->encode("tokenization", {false, 0}), (Ids{19204, 3989}));
    EXPECT_EQ(tok->encode(""), (Ids{101, 102}));
    EXPECT_EQ(tok->encode("   \n\t ", {false, 0}), Ids{});
}

TEST(WordPiece, SpecialTokensInTextAreMatchedVerbatim) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->encode("hello [MASK] world"), (Ids{101, 7592, 103, 2088, 102}));
    EXPECT_EQ(tok->encode("hello[MASK]world", {false, 0}), (Ids{7592, 103, 2088}));
    // Matching is case-sensitive (normalized=false), so the lower-case form is ordinary text.
    EXPECT_EQ(tok->encode("hello [mask] world", {false, 0}), (Ids{7592, 1031, 7308, 1033, 2088}));
    EXPECT_EQ(tok->encode("[CLS][SEP]", {false, 0}), (Ids{101, 102}));
}

TEST(WordPiece, LongWordsBecomeUnknown) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->encode(std::string(101, 'a'), {false, 0}), Ids{100});
    const auto ids = tok->encode(std::string(100, 'a'), {false, 0});
    EXPECT_GT(ids.size(), 1u);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 100), 0);
}

TEST(WordPiece, TruncationKeepsSep) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->encode("Hello, world!", {true, 4}), (Ids{101, 7592, 1010, 102}));
    EXPECT_EQ(tok->encode("Hello, world!", {true, 2}), (Ids{101, 102}));
    EXPECT_EQ(tok->encode("Hello, world!", {false, 2}), (Ids{7592, 1010}));
    EXPECT_EQ(tok->encode("Hello, world!", {true, 100}).size(), 6u);
}

TEST(WordPiece, DecodesWithCleanup) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    const Ids hello = {101, 7592, 1010, 2088, 999, 102};
    EXPECT_EQ(tok->decode(hello), "hello, world!");
    EXPECT_EQ(tok->decode(hello, false), "[CLS] hello, world! [SEP]");
    EXPECT_EQ(tok->decode({14477, 20961, 3468}), "unaffable");
    // Like transformers 5: no clean_up_tokenization_spaces unless tokenizer_config.json asks for it.
    EXPECT_EQ(tok->decode(tok->encode("Don't you're I'm. Ok ?")), "don ' t you ' re i ' m. ok?");
    EXPECT_EQ(tok->decode({}), "");
    EXPECT_THROW(tok->decode({30522}), ct3::Error);
    EXPECT_THROW(tok->decode({-1}), ct3::Error);
}

TEST(WordPiece, PiecesForStreaming) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    EXPECT_EQ(tok->id_to_piece(7592), " hello");
    EXPECT_EQ(tok->id_to_piece(20961), "ffa");
    EXPECT_EQ(tok->id_to_piece(101), "");
    EXPECT_THROW(tok->id_to_piece(40000), ct3::Error);
    EXPECT_EQ(tok->piece_to_id("##ffa"), 20961);
    EXPECT_EQ(tok->piece_to_id("[CLS]"), 101);
    EXPECT_EQ(tok->piece_to_id("not-a-token-anywhere"), std::nullopt);
    EXPECT_EQ(tok->pre_tokenize("H\xC3\xA9llo,  WORLD!"), (std::vector<std::string>{"hello", ",", "world", "!"}));
}

TEST(WordPiece, TokenizerJsonAndFolderMatchVocabTxt) {
    CT3_REQUIRE_SHARED();
    auto from_txt = minilm();
    auto from_json = ct3::load_wordpiece_tokenizer(minilm_dir() / "tokenizer.json");
    auto from_dir = ct3::load_wordpiece_tokenizer(minilm_dir());
    EXPECT_EQ(from_json->vocab_size(), 30522u);
    for (const std::string text :
         {"Hello, world!", "The unaffable Caf\xC3\xA9's", "hello [MASK] world x\xE4\xB8\xAD"}) {
        EXPECT_EQ(from_json->encode(text), from_txt->encode(text)) << text;
        EXPECT_EQ(from_dir->encode(text), from_txt->encode(text)) << text;
    }
}

TEST(WordPiece, SyntheticMpnetStyleFolder) {
    ct3::test::TempDir dir;
    // CRLF line endings, <s>/</s> specials and no tokenizer.json: settings come from tokenizer_config.json.
    ct3::test::write_file(dir.path() / "vocab.txt",
                          "<s>\r\n<pad>\r\n</s>\r\n<unk>\r\nhello\r\n##s\r\nworld\r\n<mask>\r\ndon\r\n'\r\nt\r\n");
    ct3::test::write_file(dir.path() / "tokenizer_config.json",
                          R"({"do_lower_case": true, "bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>",
                              "sep_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                              "mask_token": {"content": "<mask>", "lstrip": true}, "model_max_length": 1e30,
                              "clean_up_tokenization_spaces": true})");
    auto tok = ct3::load_wordpiece_tokenizer(dir.path());
    EXPECT_EQ(tok->vocab_size(), 11u);
    EXPECT_EQ(tok->bos_id(), 0);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->unk_id(), 3);
    EXPECT_EQ(tok->config().model_max_length, 0u);
    EXPECT_EQ(tok->encode("Hellos <mask> WORLD zzz"), (Ids{0, 4, 5, 7, 6, 3, 2}));
    EXPECT_EQ(tok->decode({0, 4, 5, 7, 6, 2}), "hellos world");
    EXPECT_EQ(tok->decode({0, 4, 5, 7, 6, 2}, false), "<s> hellos <mask> world </s>");
    EXPECT_EQ(tok->encode("Don't", {false, 0}), (Ids{8, 9, 10}));
    EXPECT_EQ(tok->decode({8, 9, 10}), "don't");  // clean_up_tokenization_spaces is on in this config
}

TEST(WordPiece, BadFilesNameTheFileAndField) {
    ct3::test::TempDir dir;
    const auto missing = dir.path() / "vocab.txt";
    EXPECT_NE(what_of([&] { ct3::load_wordpiece_tokenizer(missing); }).find(missing.string()), std::string::npos);
    fs::create_directory(dir.path() / "empty");
    EXPECT_NE(what_of([&] { ct3::load_wordpiece_tokenizer(dir.path() / "empty"); }).find("neither vocab.txt"),
              std::string::npos);

    const auto no_unk = dir.path() / "no_unk" / "vocab.txt";
    fs::create_directory(no_unk.parent_path());
    ct3::test::write_file(no_unk, "[CLS]\n[SEP]\nhello\n");
    const std::string e1 = what_of([&] { ct3::load_wordpiece_tokenizer(no_unk); });
    EXPECT_NE(e1.find("[UNK]"), std::string::npos) << e1;
    EXPECT_NE(e1.find(no_unk.string()), std::string::npos) << e1;

    const auto bpe = dir.path() / "bpe" / "tokenizer.json";
    fs::create_directory(bpe.parent_path());
    ct3::test::write_file(bpe, R"({"model": {"type": "BPE", "vocab": {}, "merges": []}})");
    const std::string e2 = what_of([&] { ct3::load_wordpiece_tokenizer(bpe); });
    EXPECT_NE(e2.find("model.type is 'BPE'"), std::string::npos) << e2;

    const auto broken = dir.path() / "broken" / "tokenizer.json";
    fs::create_directory(broken.parent_path());
    ct3::test::write_file(broken, R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": -5}}})");
    const std::string e3 = what_of([&] { ct3::load_wordpiece_tokenizer(broken); });
    EXPECT_NE(e3.find("model.vocab['a']"), std::string::npos) << e3;
    ct3::test::write_file(broken, "{\"model\": ");
    const std::string e4 = what_of([&] { ct3::load_wordpiece_tokenizer(broken); });
    EXPECT_NE(e4.find("not valid JSON"), std::string::npos) << e4;

    ct3::test::write_file(no_unk.parent_path() / "tokenizer_config.json",
                          R"({"do_lower_case": "yes", "unk_token": "hello"})");
    const std::string e5 = what_of([&] { ct3::load_wordpiece_tokenizer(no_unk); });
    EXPECT_NE(e5.find("'do_lower_case' must be a boolean"), std::string::npos) << e5;
}

TEST(WordPiece, RandomBytesNeverCrash) {
    CT3_REQUIRE_SHARED();
    auto tok = minilm();
    std::mt19937 rng(1234);
    for (int round = 0; round < 200; ++round) {
        std::string text(rng() % 64, '\0');
        for (char & c : text) c = static_cast<char>(rng() % 256);
        const auto ids = tok->encode(text, {true, 32});
        ASSERT_LE(ids.size(), 32u);
        EXPECT_EQ(ids.front(), 101);
        EXPECT_EQ(ids.back(), 102);
        EXPECT_NO_THROW(tok->decode(ids));
    }
}

TEST(WordPiece, GoldenMiniLM) {
    ct3::test::run_golden_tokenizer_case("minilm_wordpiece",
                                         [](const fs::path & p) { return ct3::load_wordpiece_tokenizer(p); });
}

TEST(WordPiece, GoldenMiniLMTruncated) {
    ct3::test::run_golden_tokenizer_case("minilm_wordpiece_trunc16",
                                         [](const fs::path & p) { return ct3::load_wordpiece_tokenizer(p); });
}
