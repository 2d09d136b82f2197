#include "models/hashed_embedder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "models/error.h"
#include "models/file_io.h"
#include "models/log.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

// Serialised IDF state, all integers u64 little-endian:
//   "CT3HASH1" | dim | n_buckets | ngram_min | ngram_max | seed | n_docs | n_entries |
//   n_entries x (bucket, df) with buckets strictly increasing.
// Document frequencies (integers) are stored rather than idf values so the state is exact.
constexpr char kMagic[8] = {'C', 'T', '3', 'H', 'A', 'S', 'H', '1'};
constexpr size_t kHeaderWords = 7;

void put_u64(std::string & out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64(const std::string & in, size_t offset) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<uint8_t>(in[offset + i])) << (8 * i);
    return v;
}

// ASCII-only classification on purpose: <cctype> depends on the process locale.
bool is_word_byte(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char ascii_lower(unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); }

// Distinct starting states keep a word and an equal-looking n-gram (e.g. "<a>") apart.
const uint64_t kWordBasis = fnv1a64("w", 1);
const uint64_t kGramBasis = fnv1a64("g", 1);

}  // namespace

uint64_t fnv1a64(const void * data, size_t size, uint64_t hash) {
    const auto * p = static_cast<const unsigned char *>(data);
    for (size_t i = 0; i < size; ++i) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void HashedEmbedderConfig::validate() const {
    CT3_CHECK(dim >= 1 && dim <= 65536, ErrorKind::invalid_argument,
              "hashed embedder: dim={} out of range (expected 1..65536)", dim);
    CT3_CHECK(n_buckets >= 1 && n_buckets <= (uint64_t(1) << 40), ErrorKind::invalid_argument,
              "hashed embedder: n_buckets={} out of range (expected 1..2^40)", n_buckets);
    CT3_CHECK(ngram_min >= 1 && ngram_min <= ngram_max && ngram_max <= 32, ErrorKind::invalid_argument,
              "hashed embedder: ngram range {}..{} invalid (expected 1 <= ngram_min <= ngram_max <= 32)", ngram_min,
              ngram_max);
}

HashedEmbedder::HashedEmbedder(HashedEmbedderConfig config) : config_(config) { config_.validate(); }

std::vector<uint64_t> HashedEmbedder::buckets_of(const std::string & text) const {
    std::vector<uint64_t> out;
    std::string padded;
    size_t i = 0;
    while (i < text.size()) {
        if (!is_word_byte(static_cast<unsigned char>(text[i]))) {
            ++i;
            continue;
        }
        padded.assign(1, '<');
        while (i < text.size() && is_word_byte(static_cast<unsigned char>(text[i]))) {
            auto c = static_cast<unsigned char>(text[i++]);
            padded.push_back(ascii_lower(c));
        }
        padded.push_back('>');
        out.push_back(fnv1a64(padded.data() + 1, padded.size() - 2, kWordBasis) % config_.n_buckets);
        for (int n = config_.ngram_min; n <= config_.ngram_max; ++n) {
            if (static_cast<size_t>(n) > padded.size()) break;
            for (size_t s = 0; s + n <= padded.size(); ++s) {
                out.push_back(fnv1a64(padded.data() + s, static_cast<size_t>(n), kGramBasis) % config_.n_buckets);
            }
        }
    }
    return out;
}

void HashedEmbedder::fit(const std::vector<std::string> & texts) {
    CT3_CHECK(!texts.empty(), ErrorKind::invalid_argument, "hashed embedder: fit() needs at least one text");
    df_.clear();
    for (const auto & text : texts) {
        auto buckets = buckets_of(text);
        std::sort(buckets.begin(), buckets.end());
        buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
        for (uint64_t b : buckets) ++df_[b];
    }
    n_docs_ = texts.size();
    logger("model")->debug("hashed embedder: fitted idf on {} texts, {} buckets seen", n_docs_, df_.size());
}

double HashedEmbedder::idf(uint64_t bucket) const {
    if (n_docs_ == 0) return 1.0;
    auto it = df_.find(bucket);
    uint64_t df = it == df_.end() ? 0 : it->second;
    return std::log((1.0 + double(n_docs_)) / (1.0 + double(df))) + 1.0;
}

std::vector<std::pair<uint64_t, double>> HashedEmbedder::features(const std::string & text) const {
    auto buckets = buckets_of(text);
    std::sort(buckets.begin(), buckets.end());
    std::vector<std::pair<uint64_t, double>> out;
    for (size_t i = 0; i < buckets.size();) {
        size_t j = i;
        while (j < buckets.size() && buckets[j] == buckets[i]) ++j;
        out.emplace_back(buckets[i], (1.0 + std::log(double(j - i))) * idf(buckets[i]));
        i = j;
    }
    return out;
}

void HashedEmbedder::embed_one(const std::string & text, float * out) const {
    const int64_t dim = config_.dim;
    std::vector<double> acc(static_cast<size_t>(dim), 0.0);
    for (const auto & [bucket, weight] : features(text)) {
        uint64_t state = bucket ^ config_.seed;
        for (int64_t base = 0; base < dim; base += 64) {
            uint64_t bits = splitmix64(state + uint64_t(base / 64) * 0x632be59bd9b4e019ULL);
            int64_t end = std::min<int64_t>(base + 64, dim);
            for (int64_t j = base; j < end; ++j, bits >>= 1) acc[j] += (bits & 1) ? weight : -weight;
        }
    }
    double norm2 = 0.0;
    for (double v : acc) norm2 += v * v;
    // The 1/sqrt(dim) projection scale cancels in the normalisation; zero stays zero (no NaN).
    double scale = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
    for (int64_t j = 0; j < dim; ++j) out[j] = static_cast<float>(acc[j] * scale);
}

at::Tensor HashedEmbedder::embed(const std::vector<std::string> & texts) {
    at::Tensor out = torch::zeros({static_cast<int64_t>(texts.size()), config_.dim}, torch::kFloat32);
    float * data = out.data_ptr<float>();
    at::parallel_for(0, static_cast<int64_t>(texts.size()), 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) embed_one(texts[i], data + i * config_.dim);
    });
    return out;
}

std::string HashedEmbedder::serialise() const {
    std::vector<std::pair<uint64_t, uint64_t>> entries(df_.begin(), df_.end());
    std::sort(entries.begin(), entries.end());
    std::string out(kMagic, sizeof(kMagic));
    put_u64(out, static_cast<uint64_t>(config_.dim));
    put_u64(out, config_.n_buckets);
    put_u64(out, static_cast<uint64_t>(config_.ngram_min));
    put_u64(out, static_cast<uint64_t>(config_.ngram_max));
    put_u64(out, config_.seed);
    put_u64(out, n_docs_);
    put_u64(out, entries.size());
    for (const auto & [bucket, df] : entries) {
        put_u64(out, bucket);
        put_u64(out, df);
    }
    return out;
}

std::string HashedEmbedder::checksum() const {
    std::string bytes = serialise();
    return fmt::format("{:016x}", fnv1a64(bytes.data(), bytes.size()));
}

void HashedEmbedder::save(const fs::path & path) const {
    write_file_atomic(path, serialise());
}

HashedEmbedder HashedEmbedder::load(const fs::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "hashed embedder: cannot open idf file '{}'", path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    const std::string where = path.string();
    const size_t header = sizeof(kMagic) + 8 * kHeaderWords;
    CT3_CHECK(bytes.size() >= header && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0, ErrorKind::bad_format,
              "hashed embedder: '{}' is not a ct3 hashed-embedder idf file (bad magic or truncated header)", where);
    auto word = [&](size_t k) { return get_u64(bytes, sizeof(kMagic) + 8 * k); };
    HashedEmbedderConfig config;
    CT3_CHECK(word(0) <= 65536 && word(2) <= 32 && word(3) <= 32, ErrorKind::bad_format,
              "hashed embedder: '{}' has out-of-range dim {} or ngram range {}..{}", where, word(0), word(2), word(3));
    config.dim = static_cast<int64_t>(word(0));
    config.n_buckets = word(1);
    config.ngram_min = static_cast<int>(word(2));
    config.ngram_max = static_cast<int>(word(3));
    config.seed = word(4);
    try {
        config.validate();
    } catch (const Error & e) {
        fail(ErrorKind::bad_format, "hashed embedder: '{}': {}", where, e.message());
    }
    HashedEmbedder result(config);
    result.n_docs_ = word(5);
    const uint64_t n_entries = word(6);
    const size_t rest = bytes.size() - header;
    CT3_CHECK(n_entries <= rest / 16 && n_entries * 16 == rest, ErrorKind::bad_format,
              "hashed embedder: '{}' declares {} idf entries but holds {} bytes of them (expected {} each)", where,
              n_entries, rest, 16);
    CT3_CHECK(result.n_docs_ > 0 || n_entries == 0, ErrorKind::bad_format,
              "hashed embedder: '{}' has idf entries but n_docs = 0", where);
    uint64_t previous = 0;
    for (uint64_t k = 0; k < n_entries; ++k) {
        uint64_t bucket = get_u64(bytes, header + 16 * k);
        uint64_t df = get_u64(bytes, header + 16 * k + 8);
        CT3_CHECK(bucket < config.n_buckets && (k == 0 || bucket > previous), ErrorKind::bad_format,
                  "hashed embedder: '{}' entry {}: bucket {} out of order or >= n_buckets {}", where, k, bucket,
                  config.n_buckets);
        CT3_CHECK(df >= 1 && df <= result.n_docs_, ErrorKind::bad_format,
                  "hashed embedder: '{}' entry {}: document frequency {} outside 1..n_docs={}", where, k, df,
                  result.n_docs_);
        result.df_[bucket] = df;
        previous = bucket;
    }
    return result;
}

nlohmann::json HashedEmbedder::identity() const {
    return {{"type", "hashed"},
            {"dim", config_.dim},
            {"n_buckets", config_.n_buckets},
            {"ngram_min", config_.ngram_min},
            {"ngram_max", config_.ngram_max},
            {"seed", config_.seed},
            {"hash", "fnv1a64"},
            {"projection", "rademacher-splitmix64"},
            {"idf_docs", n_docs_},
            {"idf_checksum", checksum()}};
}

}  // namespace ct3
