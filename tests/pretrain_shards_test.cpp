// Token shards (format, round trips, corrupt files), tokenize_corpus (framing, order, shard split,
// threads) and the packed loader (epoch coverage, seeded order, exact resume, data-parallel ranks).
#include <cstring>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/pretrain/packed_loader.h"
#include "models/pretrain/token_shards.h"
#include "models/tokenizer.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace ct3::pretrain;

namespace {

// Byte-level test tokenizer: id = byte + offset; bos/eos = 1/2. A large offset exercises uint32 shards.
class ByteTokenizer : public ct3::Tokenizer {
public:
    explicit ByteTokenizer(int32_t offset = 3) : offset_(offset) {}
    std::vector<int32_t> encode(const std::string & text, const ct3::EncodeOptions & o = {}) const override {
        std::vector<int32_t> out;
        if (o.add_special_tokens) out.push_back(1);
        for (unsigned char c : text) out.push_back(offset_ + c);
        return out;
    }
    std::string decode(const std::vector<int32_t> &, bool = true) const override { return {}; }
    std::string id_to_piece(int32_t) const override { return {}; }
    std::optional<int32_t> piece_to_id(const std::string &) const override { return std::nullopt; }
    size_t vocab_size() const override { return static_cast<size_t>(offset_) + 256; }
    int32_t bos_id() const override { return 1; }
    int32_t eos_id() const override { return 2; }
    int32_t pad_id() const override { return -1; }
    int32_t unk_id() const override { return 0; }
    bool is_special(int32_t id) const override { return id < 3; }

private:
    int32_t offset_;
};

std::vector<int32_t> iota_tokens(size_t n, uint32_t vocab) {
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919u) % vocab);
    return t;
}

std::string error_of(const std::function<void()> & fn) {
    try {
        fn();
    } catch (const ct3::Error & e) {
        return e.what();
    }
    return "(no error)";
}

fs::path write_shard(const fs::path & dir, const std::string & name, const std::vector<int32_t> & t, uint32_t vocab) {
    const fs::path p = dir / name;
    write_token_shard(p, t, vocab);
    return p;
}

std::vector<int64_t> row(const at::Tensor & t, int64_t r) {
    const at::Tensor x = t[r].contiguous();
    return std::vector<int64_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
}

}  // namespace

TEST(TokenShards, RoundTripUint16AndUint32) {
    ct3::test::TempDir tmp;
    for (uint32_t vocab : {300u, 65535u, 65536u, 100000u}) {
        std::vector<int32_t> tokens = iota_tokens(1000, vocab);
        tokens.push_back(static_cast<int32_t>(vocab - 1));  // 65534 / 65535 / 99999 at the top
        const fs::path p = write_shard(tmp.path(), "s.bin", tokens, vocab);
        const uint32_t width = vocab <= 65535 ? 2 : 4;
        EXPECT_EQ(fs::file_size(p), 32 + tokens.size() * width) << vocab;
        TokenShard shard(p);
        EXPECT_EQ(shard.bytes_per_token(), width);
        EXPECT_EQ(shard.vocab_size(), vocab);
        EXPECT_EQ(shard.size(), tokens.size());
        EXPECT_EQ(shard.to_vector(), tokens) << vocab;
        std::vector<int64_t> part(5);
        shard.copy_to(996, 5, part.data());
        for (size_t i = 0; i < 5; ++i) EXPECT_EQ(part[i], tokens[996 + i]);
    }
    // Header bytes as documented.
    const fs::path p = write_shard(tmp.path(), "h.bin", {70000, 1}, 70001);
    const std::string bytes = ct3::test::read_file(p);
    ASSERT_EQ(bytes.size(), 40u);
    EXPECT_EQ(bytes.substr(0, 8), "CT3TOKS1");
    uint32_t u32;
    uint64_t u64;
    std::memcpy(&u32, bytes.data() + 12, 4);
    EXPECT_EQ(u32, 4u);
    std::memcpy(&u64, bytes.data() + 16, 8);
    EXPECT_EQ(u64, 2u);
    std::memcpy(&u32, bytes.data() + 32, 4);
    EXPECT_EQ(u32, 70000u);
    // No temp file left behind.
    for (const auto & e : fs::directory_iterator(tmp.path())) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
}

TEST(TokenShards, WriteRejectsTokensOutsideVocab) {
    ct3::test::TempDir tmp;
    EXPECT_NE(error_of([&] { write_shard(tmp.path(), "a.bin", {1, 300}, 300); }).find("outside the vocabulary"),
              std::string::npos);
    EXPECT_NE(error_of([&] { write_shard(tmp.path(), "a.bin", {-1}, 300); }).find("a.bin"), std::string::npos);
    EXPECT_FALSE(fs::exists(tmp.path() / "a.bin"));
}

TEST(TokenShards, CorruptShardsFailNamingTheFile) {
    ct3::test::TempDir tmp;
    const fs::path good = write_shard(tmp.path(), "good.bin", iota_tokens(100, 500), 500);
    const std::string bytes = ct3::test::read_file(good);

    const fs::path truncated = tmp.path() / "short.bin";
    ct3::test::write_file(truncated, bytes.substr(0, bytes.size() - 3));
    std::string e = error_of([&] { TokenShard s(truncated); });
    EXPECT_NE(e.find("short.bin"), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;

    const fs::path magic = tmp.path() / "magic.bin";
    ct3::test::write_file(magic, "CT3TOKS2" + bytes.substr(8));
    e = error_of([&] { TokenShard s(magic); });
    EXPECT_NE(e.find("magic.bin"), std::string::npos) << e;
    EXPECT_NE(e.find("CT3TOKS1"), std::string::npos) << e;

    const fs::path tiny = tmp.path() / "tiny.bin";
    ct3::test::write_file(tiny, "CT3TOK");
    EXPECT_NE(error_of([&] { TokenShard s(tiny); }).find("tiny.bin"), std::string::npos);

    std::string bad = bytes;  // token 0 := 600 >= vocab 500
    bad[32] = static_cast<char>(600 & 0xFF);
    bad[33] = static_cast<char>(600 >> 8);
    const fs::path range = tmp.path() / "range.bin";
    ct3::test::write_file(range, bad);
    e = error_of([&] { TokenShard s(range); });
    EXPECT_NE(e.find("range.bin"), std::string::npos) << e;
    EXPECT_NE(e.find("600"), std::string::npos) << e;

    std::string width = bytes;  // 4 bytes per token claimed for a 500-piece vocab
    width[12] = 4;
    const fs::path w = tmp.path() / "width.bin";
    ct3::test::write_file(w, width);
    EXPECT_NE(error_of([&] { TokenShard s(w); }).find("width.bin"), std::string::npos);

    EXPECT_NE(error_of([&] { TokenShard s(tmp.path() / "missing.bin"); }).find("missing.bin"), std::string::npos);
}

TEST(TokenizeCorpus, FramesDocumentsInOrderAcrossShards) {
    ct3::test::TempDir tmp;
    const fs::path corpus = tmp.path() / "corpus.jsonl";
    std::vector<std::string> docs;
    std::string jsonl;
    for (int i = 0; i < 500; ++i) {
        docs.push_back(i % 97 == 5 ? std::string() : fmt::format("doc {}\n  line {}", i, std::string(i % 13, 'x')));
        jsonl += nlohmann::json({{"source", "t"}, {"text", docs.back()}}).dump() + "\n";
    }
    ct3::test::write_file(corpus, jsonl);
    std::vector<int32_t> expected;
    uint64_t bytes = 0, kept = 0;
    for (const std::string & d : docs) {
        if (d.empty()) continue;
        ++kept;
        bytes += d.size();
        expected.push_back(1);
        for (unsigned char c : d) expected.push_back(3 + c);
        expected.push_back(2);
    }
    ByteTokenizer tok;
    TokenizeOptions opt;
    opt.shard_tokens = 1000;
    opt.batch_documents = 37;
    opt.num_threads = 3;
    const ShardManifest m = tokenize_corpus(corpus, tok, tmp.path() / "out" / "train", opt);
    EXPECT_EQ(m.documents, kept);
    EXPECT_EQ(m.skipped_documents, docs.size() - kept);
    EXPECT_EQ(m.utf8_bytes, bytes);
    EXPECT_EQ(m.tokens, expected.size());
    EXPECT_EQ(m.shards.size(), (expected.size() + 999) / 1000);
    EXPECT_TRUE(fs::exists(tmp.path() / "out" / "train_000.bin"));

    const ShardManifest r = read_shard_manifest(tmp.path() / "out" / "train.json");
    EXPECT_EQ(r.tokens, m.tokens);
    EXPECT_EQ(r.vocab_size, 259u);
    EXPECT_EQ(r.bos_id, 1);
    EXPECT_EQ(r.eos_id, 2);
    ASSERT_EQ(r.shards.size(), m.shards.size());
    std::vector<int32_t> all;
    for (size_t i = 0; i < r.shards.size(); ++i) {
        const std::vector<int32_t> part = TokenShard(r.shards[i]).to_vector();
        EXPECT_LE(part.size(), 1000u);
        EXPECT_EQ(part.size(), r.shard_tokens[i]);
        all.insert(all.end(), part.begin(), part.end());
    }
    EXPECT_EQ(all, expected);

    // One thread, one big batch: identical shards.
    opt.num_threads = 1;
    opt.batch_documents = 100000;
    tokenize_corpus(corpus, tok, tmp.path() / "one" / "train", opt);
    for (size_t i = 0; i < r.shards.size(); ++i) {
        EXPECT_EQ(ct3::test::read_file(r.shards[i]),
                  ct3::test::read_file(tmp.path() / "one" / fmt::format("train_{:03d}.bin", i)));
    }

    // A large vocabulary goes to uint32 shards.
    ByteTokenizer big(65500);
    const ShardManifest b = tokenize_corpus(corpus, big, tmp.path() / "big", {});
    EXPECT_EQ(b.bytes_per_token, 4u);
    EXPECT_EQ(TokenShard(b.shards[0]).at(1), 65500 + 'd');
}

TEST(TokenizeCorpus, BadRecordNamesFileAndLine) {
    ct3::test::TempDir tmp;
    const fs::path corpus = tmp.path() / "c.jsonl";
    ct3::test::write_file(corpus, "{\"text\": \"a\"}\n\n{\"source\": \"x\"}\n");
    ByteTokenizer tok;
    const std::string e = error_of([&] { tokenize_corpus(corpus, tok, tmp.path() / "o", {}); });
    EXPECT_NE(e.find("c.jsonl"), std::string::npos) << e;
    EXPECT_NE(e.find("line 3"), std::string::npos) << e;
}

TEST(TrainingText, SplitsDocumentsIntoLines) {
    ct3::test::TempDir tmp;
    const fs::path corpus = tmp.path() / "c.jsonl";
    ct3::test::write_file(corpus, nlohmann::json({{"text", "def f(x):\r\n    return x\n\n"}}).dump() + "\n" +
                                      nlohmann::json({{"text", "Hello world."}}).dump() + "\n");
    EXPECT_EQ(write_training_text(corpus, tmp.path() / "t.txt"), 3u);
    EXPECT_EQ(ct3::test::read_file(tmp.path() / "t.txt"), "def f(x):\n    return x\nHello world.\n");
}

//
// PackedLoader
//

namespace {

// Two shards whose tokens are their stream positions: window w must then be w*L ... w*L + L.
std::vector<fs::path> position_shards(const fs::path & dir, int64_t n1, int64_t n2) {
    std::vector<int32_t> a(n1), b(n2);
    for (int64_t i = 0; i < n1; ++i) a[i] = static_cast<int32_t>(i);
    for (int64_t i = 0; i < n2; ++i) b[i] = static_cast<int32_t>(n1 + i);
    return {write_shard(dir, "p_000.bin", a, 70000), write_shard(dir, "p_001.bin", b, 70000)};
}

}  // namespace

TEST(PackedLoader, WindowsSpanShardsAndEveryWindowOncePerEpoch) {
    ct3::test::TempDir tmp;
    const auto shards = position_shards(tmp.path(), 1000, 1234);  // 2234 tokens, L = 16 -> 139 windows
    PackedLoader loader(shards, 16, 5, 42);
    ASSERT_EQ(loader.num_windows(), (2234 - 1) / 16);
    const int64_t n = loader.num_windows();
    std::multiset<int64_t> first_epoch;
    std::vector<int64_t> stream;
    for (int b = 0; b < 2 * n / 5 + 2; ++b) {
        const at::Tensor batch = loader.next();
        ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{5, 17}));
        ASSERT_EQ(batch.scalar_type(), at::kLong);
        for (int64_t r = 0; r < 5; ++r) {
            const std::vector<int64_t> w = row(batch, r);
            ASSERT_EQ(w[0] % 16, 0);
            for (int64_t k = 0; k < 17; ++k) ASSERT_EQ(w[k], w[0] + k);  // contiguous, across the shard seam
            stream.push_back(w[0] / 16);
        }
    }
    first_epoch.insert(stream.begin(), stream.begin() + n);
    std::set<int64_t> unique(first_epoch.begin(), first_epoch.end());
    EXPECT_EQ(unique.size(), static_cast<size_t>(n));
    EXPECT_EQ(first_epoch.size(), static_cast<size_t>(n));
    EXPECT_EQ(*unique.rbegin(), n - 1);
    // The second epoch is a different permutation of the same windows.
    std::vector<int64_t> e0(stream.begin(), stream.begin() + n), e1(stream.begin() + n, stream.begin() + 2 * n);
    EXPECT_EQ(e0, loader.epoch_order(0));
    EXPECT_EQ(e1, loader.epoch_order(1));
    EXPECT_NE(e0, e1);
    EXPECT_EQ(std::multiset<int64_t>(e1.begin(), e1.end()), first_epoch);
    // Another seed, another order.
    EXPECT_NE(PackedLoader(shards, 16, 5, 43).epoch_order(0), e0);
}

TEST(PackedLoader, ResumeMidEpochReproducesTheNextBatches) {
    ct3::test::TempDir tmp;
    const auto shards = position_shards(tmp.path(), 700, 300);
    PackedLoader a(shards, 8, 7, 5);  // 124 windows: batches straddle the epoch boundary
    for (int i = 0; i < 11; ++i) a.next();
    const nlohmann::json saved = a.state().to_json();
    std::vector<at::Tensor> expected;
    for (int i = 0; i < 30; ++i) expected.push_back(a.next());

    PackedLoader b(shards, 8, 7, 5);
    b.next();  // some unrelated progress first: restore must not depend on it
    b.restore(LoaderState::from_json(saved));
    EXPECT_EQ(b.state(), LoaderState::from_json(saved));
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(at::equal(b.next(), expected[i])) << "batch " << i;
    EXPECT_EQ(a.state(), b.state());
    EXPECT_GE(a.state().epoch, 2);

    EXPECT_THROW(b.restore({0, b.num_windows()}), ct3::Error);
    EXPECT_THROW(LoaderState::from_json(nlohmann::json{{"epoch", -1}, {"position", 0}}), ct3::Error);
    EXPECT_THROW(LoaderState::from_json(nlohmann::json{{"epoch", 1}}), ct3::Error);
}

TEST(PackedLoader, RanksPartitionTheGlobalBatch) {
    ct3::test::TempDir tmp;
    const auto shards = position_shards(tmp.path(), 500, 500);
    const int W = 3;
    PackedLoader global(shards, 10, 4 * W, 9);
    std::vector<std::unique_ptr<PackedLoader>> ranks;
    for (int r = 0; r < W; ++r) ranks.push_back(std::make_unique<PackedLoader>(shards, 10, 4, 9, r, W));
    for (int step = 0; step < 20; ++step) {  // 99 windows, 12 per global batch: crosses epochs
        const at::Tensor g = global.next();
        for (int r = 0; r < W; ++r) {
            const at::Tensor part = ranks[r]->next();
            ASSERT_EQ(part.size(0), 4);
            for (int64_t j = 0; j < 4; ++j) ASSERT_EQ(row(part, j), row(g, r + j * W)) << "step " << step;
            EXPECT_EQ(ranks[r]->state(), global.state());
        }
    }
    EXPECT_THROW(PackedLoader(shards, 10, 4, 9, 3, 3), ct3::Error);
}

TEST(PackedLoader, SequentialBatchesCoverEveryWindowInOrder) {
    ct3::test::TempDir tmp;
    const auto shards = position_shards(tmp.path(), 100, 61);  // 160 / 16 -> 10 windows
    PackedLoader loader(shards, 16, 4, 1);
    ASSERT_EQ(loader.num_windows(), 10);
    ASSERT_EQ(loader.num_sequential_batches(), 3);
    int64_t w = 0;
    for (int64_t i = 0; i < 3; ++i) {
        const at::Tensor b = loader.sequential_batch(i);
        EXPECT_EQ(b.size(0), i < 2 ? 4 : 2);
        for (int64_t r = 0; r < b.size(0); ++r, ++w) EXPECT_EQ(row(b, r)[0], w * 16);
    }
    EXPECT_EQ(w, 10);
    EXPECT_EQ(loader.state(), LoaderState{});  // evaluation does not move the training position
    const std::string e = error_of([&] { PackedLoader l(shards, 200, 1, 1); });
    EXPECT_NE(e.find("fewer than one window"), std::string::npos) << e;
}
