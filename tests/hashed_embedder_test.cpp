#include "models/hashed_embedder.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include <torch/torch.h>

#include "models/error.h"
#include "models/log.h"
#include "tests/test_support.h"

using ct3::HashedEmbedder;
using ct3::HashedEmbedderConfig;

namespace {

const std::vector<std::string> kCorpus = {
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. How much more money does Betty need?",
    "def add(a, b):\n    return a + b",
    "def is_prime(n):\n    for i in range(2, n):\n        if n % i == 0:\n            return False\n    return True",
    "The quick brown fox jumps over the lazy dog.",
    "The cat sat on the mat and the dog sat on the log.",
};

float cosine(const at::Tensor & a, const at::Tensor & b) { return (a * b).sum().item<float>(); }

std::string bytes_of(const at::Tensor & t) {
    at::Tensor c = t.contiguous();
    return std::string(static_cast<const char *>(c.data_ptr()), c.numel() * c.element_size());
}

}  // namespace

TEST(HashedEmbedder, KnownHashValues) {
    // FNV-1a 64 reference values (draft-eastlake-fnv): "" and "a".
    EXPECT_EQ(ct3::fnv1a64("", 0), 0xcbf29ce484222325ULL);
    EXPECT_EQ(ct3::fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
    EXPECT_EQ(ct3::fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
    // splitmix64 with seed 0: first output of the reference generator.
    EXPECT_EQ(ct3::splitmix64(0), 0xe220a8397b1dcdafULL);
}

TEST(HashedEmbedder, ShapeNormAndEmptyText) {
    HashedEmbedder e;
    at::Tensor v = e.embed({"hello world", "", "  ,,, !! ", "Ünïcödé wörds"});
    ASSERT_EQ(v.sizes(), (std::vector<int64_t>{4, 384}));
    EXPECT_EQ(v.scalar_type(), torch::kFloat32);
    EXPECT_NEAR(v[0].norm().item<float>(), 1.0f, 1e-5);
    EXPECT_NEAR(v[3].norm().item<float>(), 1.0f, 1e-5);
    // Texts without word characters give an all-zero row, never NaN.
    EXPECT_EQ(v[1].abs().sum().item<float>(), 0.0f);
    EXPECT_EQ(v[2].abs().sum().item<float>(), 0.0f);
    EXPECT_FALSE(v.isnan().any().item<bool>());
    EXPECT_EQ(e.embed({}).sizes(), (std::vector<int64_t>{0, 384}));
}

TEST(HashedEmbedder, CaseAndPunctuationInsensitive) {
    HashedEmbedder e;
    at::Tensor v = e.embed({"Hello, World!", "hello world", "hello there"});
    EXPECT_TRUE(torch::equal(v[0], v[1]));
    EXPECT_FALSE(torch::equal(v[0], v[2]));
    // Bytes >= 0x80 are word characters: "café" is one word, different from "caf".
    auto f1 = e.features("café");
    auto f2 = e.features("caf");
    EXPECT_NE(f1, f2);
    // words + n-grams: "<ab>" has 2 trigrams + 1 four-gram + 0 five-grams, plus the word.
    EXPECT_EQ(e.features("ab").size(), 4u);
}

TEST(HashedEmbedder, DeterministicAcrossInstances) {
    HashedEmbedder a;
    HashedEmbedder b;
    a.fit(kCorpus);
    b.fit(kCorpus);
    EXPECT_EQ(a.checksum(), b.checksum());
    EXPECT_EQ(a.identity(), b.identity());
    at::Tensor va = a.embed(kCorpus);
    at::Tensor vb = b.embed(kCorpus);
    EXPECT_EQ(bytes_of(va), bytes_of(vb));
    // One-by-one equals batched (no cross-talk between rows, thread count irrelevant).
    for (size_t i = 0; i < kCorpus.size(); ++i) {
        EXPECT_EQ(bytes_of(a.embed({kCorpus[i]})[0]), bytes_of(va[static_cast<int64_t>(i)]));
    }
    // A different seed is a different projection, and identity says so.
    HashedEmbedderConfig other;
    other.seed = 7;
    HashedEmbedder c(other);
    c.fit(kCorpus);
    EXPECT_NE(c.identity(), a.identity());
    EXPECT_FALSE(torch::equal(c.embed({kCorpus[0]}), a.embed({kCorpus[0]})));
}

TEST(HashedEmbedder, SimilarTextsCloserThanUnrelated) {
    HashedEmbedder e;
    e.fit(kCorpus);
    at::Tensor v = e.embed({
        "Tom sold 12 apples to his friends in June and half as many apples in July. How many apples did he sell?",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
        "def multiply(x, y):\n    return x * y",
    });
    float math_math = cosine(v[0], v[1]);
    float math_code = cosine(v[0], v[2]);
    float code_math = cosine(v[2], v[1]);
    EXPECT_GT(math_math, math_code + 0.1f) << math_math << " vs " << math_code;
    EXPECT_GT(math_math, code_math + 0.1f);
}

TEST(HashedEmbedder, IdfDownWeightsCommonWords) {
    HashedEmbedder e;
    EXPECT_FALSE(e.fitted());
    EXPECT_EQ(e.idf(12345), 1.0);
    e.fit(kCorpus);
    EXPECT_TRUE(e.fitted());
    // "the" occurs in several documents, "babysitting" in one: the common word weighs less.
    auto word_weight = [&](const std::string & w) {
        auto f = e.features(w);
        double best = 0.0;  // a single word's own feature is among its features; take the max idf
        for (auto & [bucket, weight] : f) best = std::max(best, weight);
        return best;
    };
    EXPECT_LT(word_weight("the"), word_weight("babysitting"));
    // Unseen feature: df = 0 -> ln(1 + N) + 1.
    const double n = double(kCorpus.size());
    double unseen_max = std::log(1.0 + n) + 1.0;
    for (auto & [bucket, weight] : e.features("zqxjkvw")) EXPECT_LE(weight, unseen_max + 1e-12);
    // TF is sublinear: a repeated word gets 1 + ln(count).
    HashedEmbedder plain;
    auto once = plain.features("zebra");
    auto thrice = plain.features("zebra zebra zebra");
    ASSERT_EQ(once.size(), thrice.size());
    EXPECT_NEAR(thrice[0].second, 1.0 + std::log(3.0), 1e-12);
}

TEST(HashedEmbedder, SaveLoadRoundTripExact) {
    ct3::test::TempDir tmp;
    HashedEmbedderConfig config;
    config.dim = 96;
    config.n_buckets = 1 << 16;
    config.seed = 42;
    HashedEmbedder e(config);
    e.fit(kCorpus);
    auto path = tmp.path() / "idf.bin";
    e.save(path);
    HashedEmbedder r = HashedEmbedder::load(path);
    EXPECT_EQ(r.identity(), e.identity());
    EXPECT_EQ(r.config().dim, 96);
    EXPECT_EQ(bytes_of(r.embed(kCorpus)), bytes_of(e.embed(kCorpus)));
    // Unfitted state round-trips too.
    HashedEmbedder u;
    u.save(tmp.path() / "u.bin");
    EXPECT_EQ(HashedEmbedder::load(tmp.path() / "u.bin").identity(), u.identity());
}

TEST(HashedEmbedder, LoadRejectsCorruptFiles) {
    ct3::test::TempDir tmp;
    HashedEmbedder e;
    e.fit(kCorpus);
    auto good = tmp.path() / "idf.bin";
    e.save(good);
    const std::string bytes = ct3::test::read_file(good);
    auto expect_bad = [&](const std::string & content, const char * what) {
        auto p = tmp.path() / "bad.bin";
        ct3::test::write_file(p, content);
        try {
            HashedEmbedder::load(p);
            ADD_FAILURE() << "accepted " << what;
        } catch (const ct3::Error & err) {
            EXPECT_EQ(err.kind(), ct3::ErrorKind::bad_format) << what;
            EXPECT_NE(std::string(err.what()).find("bad.bin"), std::string::npos) << err.what();
        }
    };
    expect_bad("", "empty file");
    expect_bad("NOTMAGIC" + bytes.substr(8), "bad magic");
    expect_bad(bytes.substr(0, bytes.size() - 3), "truncated entries");
    expect_bad(bytes + "x", "trailing bytes");
    std::string huge = bytes;
    std::memset(&huge[8 + 6 * 8], 0xff, 8);  // n_entries = 2^64 - 1
    expect_bad(huge, "huge entry count");
    std::string zero_dim = bytes;
    std::memset(&zero_dim[8], 0, 8);
    expect_bad(zero_dim, "dim 0");
    std::string swapped = bytes;  // swap the first two entries: buckets out of order
    const size_t h = 8 + 7 * 8;
    std::swap_ranges(swapped.begin() + h, swapped.begin() + h + 16, swapped.begin() + h + 16);
    expect_bad(swapped, "unsorted buckets");
    EXPECT_THROW(HashedEmbedder::load(tmp.path() / "missing.bin"), ct3::Error);
}

TEST(HashedEmbedder, RejectsBadConfig) {
    HashedEmbedderConfig c;
    c.dim = 0;
    EXPECT_THROW(HashedEmbedder{c}, ct3::Error);
    c = {};
    c.ngram_min = 6;
    EXPECT_THROW(HashedEmbedder{c}, ct3::Error);
    c = {};
    c.n_buckets = 0;
    EXPECT_THROW(HashedEmbedder{c}, ct3::Error);
    EXPECT_THROW(HashedEmbedder().fit({}), ct3::Error);
}

TEST(HashedEmbedder, ThousandTextsTiming) {
    std::vector<std::string> texts;
    for (int i = 0; i < 1000; ++i) texts.push_back(kCorpus[i % kCorpus.size()] + " item " + std::to_string(i));
    HashedEmbedder e;
    auto t0 = std::chrono::steady_clock::now();
    e.fit(texts);
    auto t1 = std::chrono::steady_clock::now();
    at::Tensor v = e.embed(texts);
    auto t2 = std::chrono::steady_clock::now();
    using ms = std::chrono::duration<double, std::milli>;
    ct3::logger("model")->info("hashed embedder: fit 1000 texts {:.1f} ms, embed 1000 texts {:.1f} ms",
                               ms(t1 - t0).count(), ms(t2 - t1).count());
    EXPECT_EQ(v.size(0), 1000);
    EXPECT_LT(ms(t2 - t1).count(), 10000.0);
}
