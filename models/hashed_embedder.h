// HashedEmbedder: a weight-free sentence embedder (hashed TF-IDF + random projection).
//
// Features of a text: its lower-cased words (maximal runs of ASCII letters/digits and of bytes
// >= 0x80, so UTF-8 letters stay inside words) and the character n-grams (ngram_min..ngram_max
// bytes) of each word padded as "<word>". Each feature is hashed with FNV-1a 64 (stable across
// builds and platforms, unlike std::hash) into one of n_buckets buckets.
// Weight of a bucket = (1 + ln count) * idf, with idf = ln((1 + N) / (1 + df)) + 1 as in sklearn's
// smooth_idf; before fit() every idf is 1. Buckets unseen during fit() get df = 0.
// The sparse vector is projected to `dim` with a dense Rademacher matrix that is never stored:
// row b is the sign bits of splitmix64(b ^ seed + k), k = 0, 1, ..., scaled by 1/sqrt(dim).
// The result is L2-normalised; a text without features (empty, only punctuation) maps to zeros.
// All arithmetic runs in double over features sorted by bucket, so vectors are bit-identical
// across processes and platforms.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/embedder.h"

namespace ct3 {

struct HashedEmbedderConfig {
    int64_t dim = 384;
    uint64_t n_buckets = uint64_t(1) << 20;
    int ngram_min = 3;
    int ngram_max = 5;
    uint64_t seed = 0;

    void validate() const;  // throws ct3::Error (invalid_argument) naming the bad field
};

// FNV-1a 64 of a byte string (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t fnv1a64(const void * data, size_t size, uint64_t hash = 0xcbf29ce484222325ULL);
// splitmix64 finaliser (Steele, Lea, Flood 2014): a counter-based generator step.
uint64_t splitmix64(uint64_t x);

class HashedEmbedder : public Embedder {
public:
    explicit HashedEmbedder(HashedEmbedderConfig config = {});

    // Fits document frequencies on `texts` (replacing any previous fit).
    void fit(const std::vector<std::string> & texts);
    bool fitted() const { return n_docs_ > 0; }

    // Binary IDF state: see hashed_embedder.cpp for the layout. save() is atomic (temp + rename);
    // load() validates everything and throws ct3::Error naming the file. The file also carries the
    // config, which load() restores.
    void save(const std::filesystem::path & path) const;
    static HashedEmbedder load(const std::filesystem::path & path);

    at::Tensor embed(const std::vector<std::string> & texts) override;
    int64_t dim() const override { return config_.dim; }
    nlohmann::json identity() const override;

    const HashedEmbedderConfig & config() const { return config_; }
    // The (bucket, weight) features of one text, sorted by bucket (for tests and debugging).
    std::vector<std::pair<uint64_t, double>> features(const std::string & text) const;
    double idf(uint64_t bucket) const;
    // FNV-1a 64 of the serialised state, hex; identical fits give identical checksums.
    std::string checksum() const;

private:
    std::vector<uint64_t> buckets_of(const std::string & text) const;  // one entry per occurrence
    std::string serialise() const;
    void embed_one(const std::string & text, float * out) const;

    HashedEmbedderConfig config_;
    uint64_t n_docs_ = 0;
    std::unordered_map<uint64_t, uint64_t> df_;
};

}  // namespace ct3
