// The generation loop against a small but real CausalLM (a bigram LM over a random [V, V] logit table,
// optionally steered by a per-position script) and a byte-level tokenizer (id = byte + 3; 0/1/2 =
// pad/bos/eos). The model reads positions from the KV cache, so a loop that mishandles the cache
// produces wrong text; it also refuses positions beyond max_position_embeddings like a real model.
#include <map>
#include <random>

#include <torch/torch.h>

#include "models/error.h"
#include "models/generate.h"
#include "tests/test_support.h"

namespace {

constexpr int32_t k_pad = 0, k_bos = 1, k_eos = 2;
constexpr int64_t k_vocab = 256 + 3;

class ByteTokenizer : public ct3::Tokenizer {
public:
    // With `replace_incomplete`, an incomplete UTF-8 tail decodes to U+FFFD, as HF byte-level BPE does.
    // With `strip_leading_space`, decode drops one leading space, as SentencePiece drops the dummy prefix.
    explicit ByteTokenizer(bool replace_incomplete = false, bool strip_leading_space = false)
        : replace_incomplete_(replace_incomplete), strip_leading_space_(strip_leading_space) {}

    std::vector<int32_t> encode(const std::string & text, const ct3::EncodeOptions & options) const override {
        std::vector<int32_t> ids;
        if (options.add_special_tokens) ids.push_back(k_bos);
        for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
        return ids;
    }
    std::string decode(const std::vector<int32_t> & ids, bool skip_special) const override {
        decoded_ids += ids.size();
        std::string out;
        for (int32_t id : ids) {
            CT3_CHECK(id >= 0 && id < k_vocab, ct3::ErrorKind::invalid_argument, "byte tokenizer: bad id {}", id);
            if (id < 3) {
                if (!skip_special) out += id == k_pad ? "<pad>" : id == k_bos ? "<s>" : "</s>";
            } else {
                out += static_cast<char>(id - 3);
            }
        }
        if (strip_leading_space_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
        if (replace_incomplete_) {
            const size_t complete = ct3::utf8_complete_prefix(out);
            if (complete < out.size()) out = out.substr(0, complete) + "\xEF\xBF\xBD";
        }
        return out;
    }
    std::string id_to_piece(int32_t id) const override { return decode({id}, false); }
    std::optional<int32_t> piece_to_id(const std::string & piece) const override {
        if (piece.size() == 1) return static_cast<unsigned char>(piece[0]) + 3;
        return std::nullopt;
    }
    size_t vocab_size() const override { return k_vocab; }
    int32_t bos_id() const override { return k_bos; }
    int32_t eos_id() const override { return k_eos; }
    int32_t pad_id() const override { return k_pad; }
    int32_t unk_id() const override { return -1; }
    bool is_special(int32_t id) const override { return id >= 0 && id < 3; }

    mutable size_t decoded_ids = 0;  // total ids passed to decode(), to check the streaming cost

private:
    bool replace_incomplete_;
    bool strip_leading_space_;
};

int32_t byte_id(char c) { return static_cast<unsigned char>(c) + 3; }

class BigramLM : public ct3::CausalLM {
public:
    explicit BigramLM(uint64_t seed = 1, int64_t max_pos = 1024, float scale = 4.0f) : max_pos_(max_pos) {
        std::mt19937_64 gen(seed);
        std::normal_distribution<float> normal(0.0f, scale);
        std::vector<float> values(k_vocab * k_vocab);
        for (float & v : values) v = normal(gen);
        table_ = torch::from_blob(values.data(), {k_vocab, k_vocab}, torch::kFloat).clone();
        table_.select(1, k_pad).fill_(-1e4f);  // pad, bos and eos only appear when a test asks for them
        table_.select(1, k_bos).fill_(-1e4f);
        table_.select(1, k_eos).fill_(-1e4f);
    }

    // Forces token `id` at absolute position `position` (0 = first prompt token).
    void force(int64_t position, int32_t id) { script_[position] = id; }
    void force_text(int64_t position, const std::string & text) {
        for (size_t i = 0; i < text.size(); ++i) force(position + static_cast<int64_t>(i), byte_id(text[i]));
    }

    at::Tensor forward_tokens(const at::Tensor & input_ids, ct3::KVCache * cache) override {
        CT3_CHECK(input_ids.dim() == 2 && input_ids.size(0) == 1 && input_ids.scalar_type() == torch::kInt64,
                  ct3::ErrorKind::invalid_argument, "BigramLM: input_ids must be int64 [1, seq]");
        const int64_t start = cache ? cache->length() : 0;
        const int64_t seq = input_ids.size(1);
        calls.emplace_back(start, seq);
        CT3_CHECK(start + seq <= max_pos_, ct3::ErrorKind::invalid_argument,
                  "BigramLM: positions up to {} exceed max_position_embeddings {}", start + seq - 1, max_pos_);
        at::Tensor logits = table_.index_select(0, input_ids[0]).clone();
        for (int64_t t = 0; t < seq; ++t) {
            auto it = script_.find(start + t + 1);  // the logits at position q predict position q + 1
            if (it != script_.end()) logits[t][it->second] += 1e5f;  // beats even the -1e4 of the special ids
        }
        if (cache) {
            at::Tensor k = torch::zeros({1, 1, seq, 1});
            cache->keys[0] = cache->keys[0].defined() ? torch::cat({cache->keys[0], k}, 2) : k;
            cache->values[0] = cache->keys[0];
        }
        return logits.unsqueeze(0);
    }

    ct3::LMOutput forward_train(const at::Tensor & input_ids, const at::Tensor &, const at::Tensor & labels) override {
        ct3::LMOutput out;
        out.logits = forward_tokens(input_ids, nullptr);
        if (labels.defined()) {
            out.loss = torch::nn::functional::cross_entropy(
                out.logits.select(0, 0).slice(0, 0, -1), labels.select(0, 0).slice(0, 1),
                torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
        }
        return out;
    }

    ct3::KVCache make_cache() const override {
        ct3::KVCache cache;
        cache.keys.resize(1);
        cache.values.resize(1);
        return cache;
    }
    int64_t vocab_size() const override { return k_vocab; }
    int64_t max_position_embeddings() const override { return max_pos_; }
    std::vector<int32_t> eos_token_ids() const override { return model_eos; }
    int32_t bos_token_id() const override { return k_bos; }
    c10::Device device() const override { return c10::Device(c10::kCPU); }

    const at::Tensor & table() const { return table_; }

    std::vector<std::pair<int64_t, int64_t>> calls;  // (cache length, seq) of every forward_tokens
    std::vector<int32_t> model_eos;

private:
    at::Tensor table_;
    int64_t max_pos_;
    std::map<int64_t, int32_t> script_;
};

struct Streamed {
    std::vector<std::string> pieces;
    std::vector<int32_t> ids;
    std::string text() const {
        std::string all;
        for (const auto & p : pieces) all += p;
        return all;
    }
    ct3::TokenCallback callback() {
        return [this](const std::string & piece, int32_t id) {
            pieces.push_back(piece);
            ids.push_back(id);
            return true;
        };
    }
};

ct3::GenerateParams greedy(int n) {
    ct3::GenerateParams p;
    p.max_new_tokens = n;
    return p;
}

const ByteTokenizer k_tokenizer;

}  // namespace

TEST(Generate, GreedyEqualsManualArgmaxChain) {
    BigramLM model(11);
    const auto prompt = k_tokenizer.encode("ab", {});
    Streamed streamed;
    const auto result = ct3::generate(model, k_tokenizer, prompt, greedy(20), streamed.callback());

    std::vector<int32_t> expected;
    int64_t prev = prompt.back();
    for (int i = 0; i < 20; ++i) {
        prev = model.table()[prev].argmax().item<int64_t>();
        expected.push_back(static_cast<int32_t>(prev));
    }
    EXPECT_EQ(result.ids, expected);
    EXPECT_EQ(result.finish_reason, "length");
    EXPECT_EQ(result.n_prompt_tokens, 3);
    const std::string decoded = k_tokenizer.decode(expected, true);
    EXPECT_EQ(result.text, decoded.substr(0, ct3::utf8_complete_prefix(decoded)));
    EXPECT_GE(result.prefill_ms, 0.0);
    EXPECT_GE(result.decode_ms, 0.0);
    // One prefill forward of the whole prompt, then one token per forward at the right positions;
    // no forward for the last token, whose logits would go unused.
    ASSERT_EQ(model.calls.size(), 20u);
    EXPECT_EQ(model.calls[0], std::make_pair(int64_t{0}, int64_t{3}));
    for (size_t i = 1; i < model.calls.size(); ++i)
        EXPECT_EQ(model.calls[i], std::make_pair(static_cast<int64_t>(2 + i), int64_t{1}));
    // Every token was reported, with its id.
    std::vector<int32_t> reported;
    for (int32_t id : streamed.ids)
        if (id >= 0) reported.push_back(id);
    EXPECT_EQ(reported, expected);
}

TEST(Generate, ScriptedTextAndMaxNewTokens) {
    BigramLM model;
    model.force_text(2, "hello world");
    const auto prompt = k_tokenizer.encode("x", {});  // [bos, 'x'] -> generation starts at position 2
    auto result = ct3::generate(model, k_tokenizer, prompt, greedy(5));
    EXPECT_EQ(result.text, "hello");
    EXPECT_EQ(result.ids.size(), 5u);
    EXPECT_EQ(result.finish_reason, "length");

    model.calls.clear();
    result = ct3::generate(model, k_tokenizer, prompt, greedy(0));
    EXPECT_TRUE(result.ids.empty());
    EXPECT_EQ(result.finish_reason, "length");
    EXPECT_TRUE(model.calls.empty());
}

TEST(Generate, StopsAtEos) {
    BigramLM model;
    model.force_text(2, "bc");
    model.force(4, k_eos);
    model.force_text(5, "de");
    const auto prompt = k_tokenizer.encode("a", {});
    Streamed streamed;
    auto result = ct3::generate(model, k_tokenizer, prompt, greedy(10), streamed.callback());
    EXPECT_EQ(result.finish_reason, "eos");
    EXPECT_EQ(result.ids, (std::vector<int32_t>{byte_id('b'), byte_id('c')}));
    EXPECT_EQ(result.text, "bc");
    EXPECT_EQ(streamed.text(), "bc");

    // Without stopping, the EOS id is generated like any token but skipped in the text.
    ct3::GenerateParams no_stop = greedy(4);
    no_stop.stop_at_eos = false;
    result = ct3::generate(model, k_tokenizer, prompt, no_stop);
    EXPECT_EQ(result.ids, (std::vector<int32_t>{byte_id('b'), byte_id('c'), k_eos, byte_id('d')}));
    EXPECT_EQ(result.text, "bcd");
    EXPECT_EQ(result.finish_reason, "length");

    // Explicit EOS ids replace the defaults; the model's own EOS ids count by default.
    ct3::GenerateParams custom = greedy(10);
    custom.eos_ids = {byte_id('c')};
    EXPECT_EQ(ct3::generate(model, k_tokenizer, prompt, custom).text, "b");
    model.model_eos = {byte_id('c')};
    result = ct3::generate(model, k_tokenizer, prompt, greedy(10));
    EXPECT_EQ(result.text, "b");
    EXPECT_EQ(result.finish_reason, "eos");
}

TEST(Generate, StopStringsCutTextAndStreaming) {
    BigramLM model;
    model.force_text(2, "hello world. more text");
    const auto prompt = k_tokenizer.encode("x", {});

    ct3::GenerateParams p = greedy(30);
    p.stop_strings = {"world", "zzz"};
    Streamed streamed;
    auto result = ct3::generate(model, k_tokenizer, prompt, p, streamed.callback());
    EXPECT_EQ(result.finish_reason, "stop");
    EXPECT_EQ(result.text, "hello ");
    EXPECT_EQ(streamed.text(), "hello ");  // "w", "wo", ... were held back, never streamed
    EXPECT_EQ(result.ids.size(), 11u);     // the tokens of the stop string were generated
    for (const auto & piece : streamed.pieces) EXPECT_EQ(piece.find('w'), std::string::npos);

    // The earliest match wins, whichever stop string it is.
    p.stop_strings = {"more", "o w"};
    EXPECT_EQ(ct3::generate(model, k_tokenizer, prompt, p).text, "hell");

    // A partial match that does not complete is released; the stream then equals the text.
    p.stop_strings = {"worm"};
    p.max_new_tokens = 14;
    Streamed partial;
    result = ct3::generate(model, k_tokenizer, prompt, p, partial.callback());
    EXPECT_EQ(result.finish_reason, "length");
    EXPECT_EQ(result.text, "hello world. m");
    EXPECT_EQ(partial.text(), result.text);

    // Held-back text that is a stop prefix when the length limit hits is flushed (id -1).
    p.max_new_tokens = 8;  // "hello wo"
    Streamed flushed;
    result = ct3::generate(model, k_tokenizer, prompt, p, flushed.callback());
    EXPECT_EQ(result.text, "hello wo");
    EXPECT_EQ(flushed.text(), "hello wo");
    EXPECT_EQ(flushed.pieces.back(), "wo");
    EXPECT_EQ(flushed.ids.back(), -1);
}

TEST(Generate, MultiByteUtf8IsStreamedIntact) {
    for (bool replace_incomplete : {false, true}) {
        SCOPED_TRACE(replace_incomplete ? "decoder emits U+FFFD for incomplete bytes" : "decoder emits raw bytes");
        const ByteTokenizer tokenizer(replace_incomplete);
        BigramLM model;
        const std::string text = "é🤗x";  // 2 + 4 + 1 byte tokens
        model.force_text(2, text);
        Streamed streamed;
        const auto result = ct3::generate(model, tokenizer, tokenizer.encode("a", {}), greedy(7), streamed.callback());
        EXPECT_EQ(result.text, text);
        EXPECT_EQ(streamed.text(), text);
        EXPECT_EQ(streamed.pieces, (std::vector<std::string>{"", "é", "", "", "", "🤗", "x"}));

        // A length limit in the middle of a character drops the incomplete tail.
        const auto cut = ct3::generate(model, tokenizer, tokenizer.encode("a", {}), greedy(4));
        EXPECT_EQ(cut.text, replace_incomplete ? "é\xEF\xBF\xBD" : "é");  // the decoder's own output
        EXPECT_EQ(cut.ids.size(), 4u);
    }
}

TEST(Generate, StreamingMatchesFullDecodeWithSentencePieceSpacing) {
    const ByteTokenizer tokenizer(false, /*strip_leading_space=*/true);
    BigramLM model;
    model.force_text(2, " a b  c d");
    Streamed streamed;
    auto result = ct3::generate(model, tokenizer, tokenizer.encode("x", {}), greedy(9), streamed.callback());
    EXPECT_EQ(result.text, "a b  c d");
    EXPECT_EQ(streamed.text(), "a b  c d");

    // Random bytes (spaces, broken UTF-8 and all) from a bigram chain: stream == text == full decode.
    BigramLM random_model(21);
    Streamed random_stream;
    result = ct3::generate(random_model, tokenizer, tokenizer.encode(" q", {}), greedy(300), random_stream.callback());
    const std::string full = tokenizer.decode(result.ids, true);
    EXPECT_EQ(result.text, full.substr(0, ct3::utf8_complete_prefix(full)));
    EXPECT_EQ(random_stream.text(), result.text);
}

TEST(Generate, StreamingDecodesAWindowNotEverything) {
    const ByteTokenizer tokenizer;
    BigramLM model;
    model.force_text(2, std::string(200, 'z'));
    const auto result = ct3::generate(model, tokenizer, tokenizer.encode("x", {}), greedy(200));
    EXPECT_EQ(result.text, std::string(200, 'z'));
    // Re-decoding everything each step would pass 200 * 201 / 2 = 20100 ids to decode().
    EXPECT_LT(tokenizer.decoded_ids, 2000u);
}

TEST(Generate, CallbackCancels) {
    BigramLM model(3);
    int calls = 0;
    const auto result = ct3::generate(model, k_tokenizer, k_tokenizer.encode("a", {}), greedy(50),
                                      [&](const std::string &, int32_t) { return ++calls < 3; });
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(result.ids.size(), 3u);
    EXPECT_EQ(result.finish_reason, "cancelled");
    EXPECT_EQ(model.calls.size(), 3u);  // prefill + 2 decode forwards, none after cancelling
}

TEST(Generate, SeedDeterminesSampledText) {
    BigramLM model(5, 1024, 1.0f);  // a flat table: sampling really varies
    auto run = [&](int64_t seed) {
        ct3::GenerateParams p = greedy(40);
        p.sampling.temperature = 1.0f;
        p.sampling.seed = seed;
        return ct3::generate(model, k_tokenizer, k_tokenizer.encode("seed", {}), p).ids;
    };
    const auto a = run(123);
    EXPECT_EQ(a, run(123));
    EXPECT_NE(a, run(124));
    // And it differs from greedy decoding.
    EXPECT_NE(a, ct3::generate(model, k_tokenizer, k_tokenizer.encode("seed", {}), greedy(40)).ids);
}

TEST(Generate, RespectsMaxPositionEmbeddings) {
    BigramLM model(2, /*max_pos=*/10);
    const auto prompt = k_tokenizer.encode("abc", {});  // 4 tokens at positions 0..3
    auto result = ct3::generate(model, k_tokenizer, prompt, greedy(100));
    // Tokens generated at positions 4..10; the one at position 10 is never fed back.
    EXPECT_EQ(result.ids.size(), 7u);
    EXPECT_EQ(result.finish_reason, "length");

    const auto full = k_tokenizer.encode("abcdefghi", {});  // exactly 10 tokens
    result = ct3::generate(model, k_tokenizer, full, greedy(100));
    EXPECT_EQ(result.ids.size(), 1u);
    EXPECT_EQ(result.finish_reason, "length");

    try {
        ct3::generate(model, k_tokenizer, k_tokenizer.encode("abcdefghij", {}), greedy(5));
        FAIL() << "expected a context-length error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
    }
}

TEST(Generate, RejectsBadInput) {
    BigramLM model;
    auto message = [&](const std::vector<int32_t> & prompt, const ct3::GenerateParams & p) -> std::string {
        try {
            ct3::generate(model, k_tokenizer, prompt, p);
        } catch (const ct3::Error & e) {
            EXPECT_EQ(e.kind(), ct3::ErrorKind::invalid_argument);
            return e.what();
        }
        return "no error";
    };
    EXPECT_NE(message({}, greedy(5)).find("empty"), std::string::npos);
    EXPECT_NE(message({1, 259}, greedy(5)).find("259"), std::string::npos);
    EXPECT_NE(message({1, -1}, greedy(5)).find("-1"), std::string::npos);
    EXPECT_NE(message({1}, greedy(-1)).find("max_new_tokens"), std::string::npos);
    ct3::GenerateParams p = greedy(5);
    p.stop_strings = {"ok", ""};
    EXPECT_NE(message({1}, p).find("stop string 1"), std::string::npos);
    p = greedy(5);
    p.sampling.top_p = 2.0f;
    EXPECT_NE(message({1}, p).find("--top-p"), std::string::npos);
    EXPECT_TRUE(model.calls.empty());
}

TEST(Generate, Utf8CompletePrefix) {
    EXPECT_EQ(ct3::utf8_complete_prefix(""), 0u);
    EXPECT_EQ(ct3::utf8_complete_prefix("abc"), 3u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\xC3"), 1u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\xC3\xA9"), 3u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\xF0\x9F\xA4"), 1u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\xF0\x9F\xA4\x97"), 5u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\x80"), 2u);          // stray continuation: left alone
    EXPECT_EQ(ct3::utf8_complete_prefix("\x80\x80\x80\x80\x80"), 5u);
    EXPECT_EQ(ct3::utf8_complete_prefix("a\xFF"), 2u);          // invalid lead byte: left alone
}
