// Byte-level BPE from tokenizer.json: small hand-built tokenizers with hand-computed ids, error paths, and the
// golden ids that HF `tokenizers` produced for two trained fixtures.
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"
#include "models/pretokenizer.h"
#include "models/tokenizer_bpe.h"
#include "tests/test_support.h"

using nlohmann::json;
using ct3::EncodeOptions;
using Ids = std::vector<int32_t>;

namespace {

// The Llama-3 pre-tokenizer regex.
const char * const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Byte-level vocabulary where the stand-in of byte b has id b, plus `extra` pieces from id 256 on.
json byte_vocab(const std::vector<std::string> & extra) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[ct3::byte_to_unicode(static_cast<uint8_t>(b))] = b;
    for (size_t i = 0; i < extra.size(); ++i) vocab[extra[i]] = 256 + static_cast<int>(i);
    return vocab;
}

// A GPT-2 style tokenizer.json: ByteLevel pre-tokenizer with the GPT-2 regex and a ByteLevel decoder.
json gpt2_like(const json & vocab, const json & merges) {
    return {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"post_processor", {{"type", "ByteLevel"}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab},
              {"merges", merges}}}};
}

// The "hello world" tokenizer: ids 256.. are he, ll, hell, hello, Ġw, or, Ġwor.
json hello_tokenizer() {
    return gpt2_like(byte_vocab({"he", "ll", "hell", "hello", "Ġw", "or", "Ġwor"}),
                     json::array({"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"}));
}

class BpeTest : public ::testing::Test {
protected:
    std::unique_ptr<ct3::Tokenizer> load(const json & tokenizer, const json & config = nullptr) {
        const auto dir = tmp_.path() / ("t" + std::to_string(counter_++));
        std::filesystem::create_directories(dir);
        ct3::test::write_file(dir / "tokenizer.json", tokenizer.dump());
        if (!config.is_null()) ct3::test::write_file(dir / "tokenizer_config.json", config.dump());
        return ct3::load_bpe_tokenizer(dir / "tokenizer.json");
    }

    // The message of the ct3::Error that loading `tokenizer` throws (fails the test when nothing is thrown).
    std::string load_error(const json & tokenizer, ct3::ErrorKind expected_kind) {
        try {
            load(tokenizer);
        } catch (const ct3::Error & e) {
            EXPECT_EQ(e.kind(), expected_kind) << e.what();
            return e.what();
        }
        ADD_FAILURE() << "expected ct3::Error";
        return {};
    }

    ct3::test::TempDir tmp_;
    int counter_ = 0;
};

std::vector<std::string> pre_tokenize(const json & node, const std::string & text) {
    auto step = ct3::PreTokenizer::from_json(node, {"test.json", "pre_tokenizer"});
    std::vector<std::string> pieces{text};
    step->apply(pieces);
    return pieces;
}

}  // namespace

TEST_F(BpeTest, MergesByRankAndDecodesBack) {
    auto tok = load(hello_tokenizer());
    // "hello" -> he, ll -> hell -> hello; "Ġworld" -> Ġw, or -> Ġwor, l, d.
    EXPECT_EQ(tok->encode("hello world"), (Ids{259, 262, 'l', 'd'}));
    EXPECT_EQ(tok->decode({259, 262, 'l', 'd'}), "hello world");
    EXPECT_EQ(tok->id_to_piece(262), " wor");
    EXPECT_EQ(tok->piece_to_id("Ġwor"), 262);
    EXPECT_FALSE(tok->piece_to_id("nope").has_value());
    EXPECT_EQ(tok->vocab_size(), 263u);
    EXPECT_EQ(tok->bos_id(), -1);
    EXPECT_EQ(tok->eos_id(), -1);
    EXPECT_EQ(tok->unk_id(), -1);
    EXPECT_EQ(tok->encode(""), Ids{});
}

TEST_F(BpeTest, LowerRankMergeWinsOverLeftmost) {
    // "abc" with "b c" ranked before "a b" gives a|bc; the other order gives ab|c.
    const json vocab = byte_vocab({"ab", "bc"});
    auto bc_first = load(gpt2_like(vocab, json::array({"b c", "a b"})));
    auto ab_first = load(gpt2_like(vocab, json::array({"a b", "b c"})));
    EXPECT_EQ(bc_first->encode("abc"), (Ids{'a', 257}));
    EXPECT_EQ(ab_first->encode("abc"), (Ids{256, 'c'}));
    // Equal ranks everywhere in "aaaa" with only "a a": pairs merge left to right.
    auto aa = load(gpt2_like(byte_vocab({"aa"}), json::array({"a a"})));
    EXPECT_EQ(aa->encode("aaaaa"), (Ids{256, 256, 'a'}));
}

TEST_F(BpeTest, BothMergeFormatsAgree) {
    json pairs = hello_tokenizer();
    json merges = json::array();
    for (const auto & m : pairs["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        merges.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    pairs["model"]["merges"] = merges;
    auto a = load(hello_tokenizer());
    auto b = load(pairs);
    const std::string text = "hello world, hello worldly hellos";
    EXPECT_EQ(a->encode(text), b->encode(text));
    EXPECT_EQ(b->encode("hello"), Ids{259});
}

TEST_F(BpeTest, IgnoreMergesTakesWholeVocabularyWords) {
    json t = gpt2_like(byte_vocab({"ab", "abc"}), json::array({"a b"}));
    EXPECT_EQ(load(t)->encode("abc"), (Ids{256, 'c'}));
    t["model"]["ignore_merges"] = true;
    auto tok = load(t);
    EXPECT_EQ(tok->encode("abc"), Ids{257});
    EXPECT_EQ(tok->encode("abcab"), (Ids{256, 'c', 256})) << "not a vocabulary word: merges apply";
}

TEST_F(BpeTest, UnseenCharactersFallBackToByteStandIns) {
    auto tok = load(hello_tokenizer());
    // U+00E9 is C3 A9, U+1F917 is F0 9F A4 97: no merges, so one id per byte (ids equal bytes here).
    EXPECT_EQ(tok->encode("\xC3\xA9"), (Ids{0xC3, 0xA9}));
    EXPECT_EQ(tok->encode("\xF0\x9F\xA4\x97"), (Ids{0xF0, 0x9F, 0xA4, 0x97}));
    // Every byte string round-trips, including invalid UTF-8 and NUL.
    std::string all;
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
    EXPECT_EQ(tok->decode(tok->encode(all)), all);
    const std::string broken = "ok \xFF\xC3 bad";
    EXPECT_EQ(tok->decode(tok->encode(broken)), broken);
    // A partial character is emitted as raw bytes by id_to_piece (for streaming).
    EXPECT_EQ(tok->id_to_piece(0xC3), "\xC3");
}

TEST_F(BpeTest, ModelByteFallbackAndUnk) {
    // No pre-tokenizer or byte-level mapping: SentencePiece-like <0xXX> fallback in the BPE model itself.
    json vocab = {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"<0xC3>", 3}, {"<0xA9>", 4}, {"ab", 5}};
    json t = {{"model",
               {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({json::array({"a", "b"})})},
                {"unk_token", "<unk>"}, {"byte_fallback", true}}}};
    auto tok = load(t);
    EXPECT_EQ(tok->encode("ab\xC3\xA9" "a"), (Ids{5, 3, 4, 1}));
    EXPECT_EQ(tok->encode("a\xE2\x82\xAC" "b"), (Ids{1, 0, 2})) << "no byte tokens for the euro sign: unk";
    EXPECT_EQ(tok->unk_id(), 0);
    t["model"]["byte_fallback"] = false;
    t["model"]["fuse_unk"] = true;
    EXPECT_EQ(load(t)->encode("a\xC3\xA9\xC3\xA9" "b"), (Ids{1, 0, 2})) << "consecutive unknowns fused";
    t["model"]["unk_token"] = nullptr;
    EXPECT_EQ(load(t)->encode("a\xC3\xA9" "b"), Ids{5}) << "no unk: dropped (as HF does), so a and b merge";
}

TEST_F(BpeTest, AddedTokensSplitTheTextFirst) {
    json t = hello_tokenizer();
    t["added_tokens"] = json::array({
        {{"id", 300}, {"content", "<|end|>"}, {"special", true}},
        {{"id", 301}, {"content", "<|end|>!"}, {"special", false}},
        {{"id", 302}, {"content", "<mask>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}},
        {{"id", 303}, {"content", "[X]"}, {"special", false}, {"single_word", true}},
    });
    auto tok = load(t);
    EXPECT_EQ(tok->encode("hello<|end|>hello"), (Ids{259, 300, 259}));
    EXPECT_EQ(tok->encode("<|end|>!"), Ids{301}) << "longest match wins";
    EXPECT_EQ(tok->encode("he <mask>  he"), (Ids{256, 302, 256})) << "lstrip/rstrip swallow the spaces";
    EXPECT_EQ(tok->encode("a [X] b"), (Ids{'a', ' ', 303, ' ', 'b'})) << "Ġ (the space) has id 32";
    EXPECT_EQ(tok->encode("a[X]"), (Ids{'a', '[', 'X', ']'})) << "single_word: not inside a word";
    EXPECT_TRUE(tok->is_special(300));
    EXPECT_FALSE(tok->is_special(301));
    EXPECT_FALSE(tok->is_special(259));
    EXPECT_EQ(tok->decode({259, 300, 259}), "hellohello");
    EXPECT_EQ(tok->decode({259, 300, 259}, false), "hello<|end|>hello");
    EXPECT_EQ(tok->decode({259, 301}), "hello<|end|>!") << "non-special added tokens are kept";
    EXPECT_EQ(tok->vocab_size(), 304u);
    EXPECT_EQ(tok->piece_to_id("<|end|>"), 300);
    EXPECT_EQ(tok->eos_id(), -1);
    EXPECT_EQ(tok->decode({259, 5000, -7}), "hello") << "ids outside the vocabulary contribute nothing";
}

TEST_F(BpeTest, TemplatePostProcessorAndTruncation) {
    json t = hello_tokenizer();
    t["added_tokens"] = json::array({{{"id", 300}, {"content", "<|bos|>"}, {"special", true}},
                                     {{"id", 301}, {"content", "<|eos|>"}, {"special", true}}});
    t["post_processor"] = {
        {"type", "Sequence"},
        {"processors",
         json::array({{{"type", "ByteLevel"}},
                      {{"type", "TemplateProcessing"},
                       {"single", json::array({{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
                                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                               {{"SpecialToken", {{"id", "<|eos|>"}, {"type_id", 0}}}}})},
                       {"special_tokens", {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {300}}}},
                                           {"<|eos|>", {{"id", "<|eos|>"}, {"ids", {301}}}}}}}})}};
    auto tok = load(t);
    EXPECT_EQ(tok->encode("hello world"), (Ids{300, 259, 262, 'l', 'd', 301}));
    EXPECT_EQ(tok->encode(""), (Ids{300, 301}));
    EXPECT_EQ(tok->encode("hello world", {false, 0}), (Ids{259, 262, 'l', 'd'}));
    EXPECT_EQ(tok->encode("hello world", {true, 4}), (Ids{300, 259, 262, 301})) << "the closing special survives";
    EXPECT_EQ(tok->encode("hello world", {false, 3}), (Ids{259, 262, 'l'}));
    EXPECT_EQ(tok->encode("hello world", {true, 1}), Ids{300});
    EXPECT_EQ(tok->decode(tok->encode("hello world")), "hello world");
}

TEST_F(BpeTest, SpecialIdsFromConfigOrGuessed) {
    json t = hello_tokenizer();
    t["added_tokens"] = json::array({{{"id", 300}, {"content", "<|begin_of_text|>"}, {"special", true}},
                                     {{"id", 301}, {"content", "<|end_of_text|>"}, {"special", true}},
                                     {{"id", 302}, {"content", "<|im_end|>"}, {"special", true}}});
    auto guessed = load(t);
    EXPECT_EQ(guessed->bos_id(), 300);
    EXPECT_EQ(guessed->eos_id(), 301);
    EXPECT_EQ(guessed->pad_id(), -1);

    auto configured = load(t, {{"bos_token", nullptr}, {"eos_token", {{"content", "<|im_end|>"}}},
                               {"pad_token", "<|end_of_text|>"}});
    EXPECT_EQ(configured->bos_id(), -1) << "null in the config means none, not a guess";
    EXPECT_EQ(configured->eos_id(), 302);
    EXPECT_EQ(configured->pad_id(), 301);

    try {
        load(t, {{"eos_token", "<|missing|>"}});
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: eos_token '<|missing|>'"), std::string::npos)
            << e.what();
    }
}

TEST_F(BpeTest, UnsupportedComponentsNameTheJsonPath) {
    json t = hello_tokenizer();
    t["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "ByteLevel"}}, {{"type", "Metaspace"}}})}};
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported)
                  .find("tokenizer.json: pre_tokenizer.pretokenizers[1].type 'Metaspace' is not supported "
                        "(supported: ByteLevel, Split, Sequence, Digits)"),
              std::string::npos);

    t = hello_tokenizer();
    t["decoder"] = {{"type", "WordPiece"}};
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported).find("decoder.type 'WordPiece'"), std::string::npos);
    t = hello_tokenizer();
    t["normalizer"] = {{"type", "Sequence"},
                       {"normalizers", json::array({{{"type", "NFC"}}, {{"type", "Lowercase"}}})}};
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported).find("normalizer.normalizers[1].type 'Lowercase'"),
              std::string::npos);
    t = hello_tokenizer();
    t["post_processor"] = {{"type", "Whatever"}};
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported).find("post_processor.type 'Whatever'"), std::string::npos);
    t = hello_tokenizer();
    t["model"]["continuing_subword_prefix"] = "##";
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported).find("model.continuing_subword_prefix"), std::string::npos);
    t = hello_tokenizer();
    t["model"]["type"] = "WordPiece";
    EXPECT_NE(load_error(t, ct3::ErrorKind::unsupported).find("model.type 'WordPiece'"), std::string::npos);
    t = hello_tokenizer();
    t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("pre_tokenizer.pattern.Regex regex '(unclosed'"),
              std::string::npos);

    t = hello_tokenizer();
    t["normalizer"] = {{"type", "NFC"}};
    EXPECT_EQ(load(t)->encode("hello"), Ids{259}) << "NFC is accepted (applied as identity)";
}

TEST_F(BpeTest, MalformedFilesNameTheFileAndField) {
    const auto path = tmp_.path() / "broken" / "tokenizer.json";
    std::filesystem::create_directories(path.parent_path());
    ct3::test::write_file(path, "{\"model\": {\"type\": \"BPE\", ");
    try {
        ct3::load_bpe_tokenizer(path);
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::bad_format);
        EXPECT_NE(std::string(e.what()).find(path.string() + ": not valid JSON"), std::string::npos) << e.what();
    }
    try {
        ct3::load_bpe_tokenizer(tmp_.path() / "absent" / "tokenizer.json");
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::io);
    }

    json t = hello_tokenizer();
    t["model"]["merges"][2] = "he llo";
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("model.merges[2]: piece 'llo' is not in the vocabulary"),
              std::string::npos);
    t = hello_tokenizer();
    t["model"]["merges"][0] = 7;
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("model.merges[0] is 7"), std::string::npos);
    t = hello_tokenizer();
    t["model"]["vocab"]["zz"] = "x";
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("model.vocab.zz is a string"), std::string::npos);
    t = hello_tokenizer();
    t["model"]["vocab"]["zz"] = 5;
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("both have id 5"), std::string::npos);
    t = hello_tokenizer();
    t["added_tokens"] = json::array({{{"content", "<x>"}}});
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("added_tokens[0].id is missing"), std::string::npos);
    t = hello_tokenizer();
    t.erase("model");
    EXPECT_NE(load_error(t, ct3::ErrorKind::bad_format).find("model is missing"), std::string::npos);
}

TEST(PreTokenizer, Gpt2RegexAndByteLevel) {
    const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    EXPECT_EQ(pre_tokenize(byte_level, "don't  stop 42x"),
              (std::vector<std::string>{"don", "'t", "Ġ", "Ġstop", "Ġ42", "x"}));
    const json prefix = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}};
    EXPECT_EQ(pre_tokenize(prefix, "hi there"), std::vector<std::string>{"ĠhiĠthere"});
}

TEST(PreTokenizer, SplitBehaviorsAndDigits) {
    auto split = [](const char * behavior, bool invert) {
        return json{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    };
    using P = std::vector<std::string>;
    EXPECT_EQ(pre_tokenize(split("Removed", false), "a-b--c"), (P{"a", "b", "c"}));
    EXPECT_EQ(pre_tokenize(split("Isolated", false), "a-b--c"), (P{"a", "-", "b", "-", "-", "c"}));
    EXPECT_EQ(pre_tokenize(split("MergedWithPrevious", false), "a-b--c"), (P{"a-", "b-", "-", "c"}));
    EXPECT_EQ(pre_tokenize(split("MergedWithNext", false), "a-b--c"), (P{"a", "-b", "-", "-c"}));
    EXPECT_EQ(pre_tokenize(split("Contiguous", false), "a-b--c"), (P{"a", "-", "b", "--", "c"}));
    EXPECT_EQ(pre_tokenize(split("Removed", true), "a-b--c"), (P{"-", "-", "-"}));

    const json regex = {{"type", "Split"}, {"pattern", {{"Regex", R"(\p{N}{1,3})"}}}, {"behavior", "Isolated"}};
    EXPECT_EQ(pre_tokenize(regex, "x1234567"), (P{"x", "123", "456", "7"}));
    EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "a12b"), (P{"a", "1", "2", "b"}));
    EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "a12b3"), (P{"a", "12", "b", "3"}));
    const json seq = {{"type", "Sequence"},
                      {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                     {{"type", "ByteLevel"}, {"add_prefix_space", false}}})}};
    EXPECT_EQ(pre_tokenize(seq, "ab 12"), (P{"ab", "Ġ", "1", "2"}));
}

TEST_F(BpeTest, SafeFromSeveralThreads) {
    auto tok = load(hello_tokenizer());
    const std::vector<std::string> texts = {"hello world", "worldly hellos, hello!", "\xC3\xA9t\xC3\xA9 hello",
                                            std::string(300, 'l') + " world"};
    std::vector<Ids> expected;
    for (const auto & text : texts) expected.push_back(tok->encode(text));
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) {
                const size_t k = static_cast<size_t>(i + t) % texts.size();
                if (tok->encode(texts[k]) != expected[k] || tok->decode(expected[k]) != texts[k]) ++mismatches;
            }
        });
    }
    for (auto & th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0);
}

// tests/data/tokenizers/golden.json, written by HF `tokenizers` (see tests/tools): for each case, the ids of
// every text and the decoded text (skip_special_tokens=True).
TEST(BpeGolden, MatchesHuggingFace) {
    const auto golden_path = ct3::test::data_dir() / "tokenizers" / "golden.json";
    if (!std::filesystem::exists(golden_path)) GTEST_SKIP() << golden_path << " not found (fixture not generated yet)";
    const json golden = json::parse(ct3::test::read_file(golden_path));
    const auto & texts = golden.at("texts");
    int checked = 0;
    for (const auto & c : golden.at("cases")) {
        const std::string name = c.at("name");
        if (name != "bpe_llama3style" && name != "bpe_gpt2style") continue;
        SCOPED_TRACE(name);
        const std::string spec = c.at("tokenizer");
        ASSERT_EQ(spec.rfind("data:", 0), 0u) << spec;
        auto tok = ct3::load_bpe_tokenizer(ct3::test::data_dir() / spec.substr(5));
        const EncodeOptions options{c.at("add_special_tokens").get<bool>(), c.at("max_length").get<size_t>()};
        for (size_t i = 0; i < texts.size(); ++i) {
            const std::string text = texts[i];
            SCOPED_TRACE(::testing::Message() << "text " << i << ": " << text);
            const Ids expected = c.at("ids")[i].get<Ids>();
            EXPECT_EQ(tok->encode(text, options), expected);
            EXPECT_EQ(tok->decode(expected), c.at("decoded")[i].get<std::string>());
        }
        ++checked;
    }
    EXPECT_EQ(checked, 2) << "golden.json lacks the bpe_llama3style / bpe_gpt2style cases";
}

TEST(BpeGolden, SpecialIdsOfFixtures) {
    const auto dir = ct3::test::data_dir() / "tokenizers";
    if (!std::filesystem::exists(dir / "bpe_llama3style")) GTEST_SKIP() << dir << " has no BPE fixtures yet";
    auto llama = ct3::load_bpe_tokenizer(dir / "bpe_llama3style" / "tokenizer.json");
    EXPECT_EQ(llama->bos_id(), 0);
    EXPECT_EQ(llama->eos_id(), 1);
    EXPECT_TRUE(llama->is_special(1));
    EXPECT_EQ(llama->encode("Hello", {true, 0}).front(), 0);
    auto gpt2 = ct3::load_bpe_tokenizer(dir / "bpe_gpt2style" / "tokenizer.json");
    EXPECT_EQ(gpt2->bos_id(), -1) << "tokenizer_config.json says bos_token: null";
    EXPECT_EQ(gpt2->eos_id(), 0);
}

// Logs encode throughput on ~1 MB of mixed text (no assertion on speed: machines differ).
TEST_F(BpeTest, EncodeThroughput) {
    json t = hello_tokenizer();
    t["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern",
                        {{"Regex", kLlama3Pattern}}},
                       {"behavior", "Isolated"}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
    auto tok = load(t);
    const std::string unit = "hello world, the worldly hellos said 12345 times: caf\xC3\xA9 \xF0\x9F\xA4\x97\n";
    std::string text;
    for (size_t i = 0; text.size() < (1u << 20); ++i) text += unit + std::to_string(i) + " ";
    const auto start = std::chrono::steady_clock::now();
    const Ids ids = tok->encode(text, {false, 0});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(tok->decode(ids), text);
    ct3::logger("test")->info("BPE encode: {:.2f} MB in {:.3f} s = {:.1f} MB/s, {} ids", text.size() / 1e6, seconds,
                              text.size() / 1e6 / seconds, ids.size());
    std::printf("BPE encode throughput: %.1f MB/s (%zu bytes, %zu ids)\n", text.size() / 1e6 / seconds, text.size(),
                ids.size());
}

// Arbitrary bytes (invalid UTF-8 included) survive the Llama-3 style regex and byte-level mapping, and the
// concatenated id_to_piece stream equals decode(). Long runs exercise the regex and the merge loop.
TEST_F(BpeTest, HostileInputRoundTrips) {
    json t = hello_tokenizer();
    t["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern",
                        {{"Regex", kLlama3Pattern}}},
                       {"behavior", "Isolated"}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
    auto tok = load(t);
    std::mt19937 rng(1234);
    for (int round = 0; round < 200; ++round) {
        std::string text(rng() % 64, '\0');
        for (char & c : text) c = static_cast<char>(rng() % 4 == 0 ? "hel o\n\t'"[rng() % 8] : rng() % 256);
        const Ids ids = tok->encode(text, {false, 0});
        std::string streamed;
        for (int32_t id : ids) streamed += tok->id_to_piece(id);
        ASSERT_EQ(tok->decode(ids), text) << "round " << round;
        ASSERT_EQ(streamed, text) << "round " << round;
    }
    for (const std::string & run : {std::string(1 << 18, ' '), std::string(1 << 18, 'l'), std::string(1 << 18, '\n')}) {
        const Ids ids = tok->encode(run + "x hello", {false, 0});
        EXPECT_EQ(tok->decode(ids), run + "x hello");
        EXPECT_EQ(ids.back(), 259);
    }
}
