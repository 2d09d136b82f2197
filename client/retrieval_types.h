// The retrieval types shared by the HTTP client and the in-process KB: a neighbour, a search
// request, the KB summary.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ct3::client {

// One retrieved neighbour, as /v1/search returns it.
struct Neighbour {
    int64_t rank = 0;  // 0..n-1, the order of the list
    int64_t id = 0;    // the KB entry (SIFT may pick one entry more than once)
    std::string text;
    std::string dataset;
    int64_t row = 0;        // row in the source dataset
    double score = 0;       // sift: posterior variance after this pick; faiss: |cos| (both decreasing)
    double similarity = 0;  // signed cosine to the query
};

// Exactly one of `query` (text, embedded by the server) and `embedding` (the KB's dimension).
struct SearchRequest {
    std::string query;
    std::vector<float> embedding;
    int k = 32;
    std::string mode = "sift";  // "sift" | "faiss"
    std::optional<int> candidates;
    std::optional<double> lambda;
    std::optional<int> nprobe;
    std::optional<int> ef_search;
};

struct KbInfo {
    std::string embedder;  // the embedder's name ("hashed", a model folder name, ...)
    int64_t dim = 0;
    int64_t count = 0;
    nlohmann::json raw;  // the whole GET /v1/kb reply (embedder identity with its fitted state, datasets, ...)
};

}  // namespace ct3::client
