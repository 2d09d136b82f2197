// Retriever: neighbours of a query embedding in a knowledge base, by plain FAISS top-k or by SIFT.
//
// Pre-selection as activeft (ct3_original.md §2.3): search the index with q and with −q for K
// candidates each, merge by score, keep the K with the largest |⟨x, q⟩| (K clamped to the KB size;
// ids seen in both halves are kept once). mode faiss returns the first k of those (score = |cos|);
// mode sift runs sift_select over them with the exact stored embeddings (score = posterior variance
// σ_i², similarity = the candidate's plain cosine with q).
//
// Thread-safe. Concurrent search() calls are gathered into one FAISS call (up to max_batch queries:
// whatever queued while the previous call ran, optionally waiting batch_window_us for more) because
// one search over B queries costs far less than B searches; SIFT then runs on each caller's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ct3::kb {

class KnowledgeBase;

enum class SearchMode { sift, faiss };
const char * search_mode_name(SearchMode mode);
SearchMode parse_search_mode(const std::string & name);  // "sift" | "faiss"; throws naming the value

struct SearchParams {
    int64_t k = 32;             // neighbours returned (N)
    SearchMode mode = SearchMode::sift;
    int64_t candidates = 1000;  // FAISS pre-selection size (K), clamped to the KB size
    double lambda = 0.01;       // SIFT noise variance λ
    bool also_query_opposite = true;  // pre-select by |⟨x,q⟩| (q and −q), as activeft
    int64_t nprobe = 0;         // IVF indexes: inverted lists probed (0 = the index's own setting)
    int64_t ef_search = 0;      // HNSW indexes: search breadth (0 = the index's own setting)

    void validate(int64_t max_k = 10000) const;  // throws ct3::Error (invalid_argument) naming the field
};

struct Hit {
    int64_t id = -1;
    double score = 0;       // sift: posterior variance after this pick; faiss: |cos|
    double similarity = 0;  // ⟨x, q⟩ (cosine for unit vectors), signed
};

struct RetrieverOptions {
    int64_t max_batch = 64;         // queries per FAISS call
    int64_t batch_window_us = 0;    // extra wait for company (0: batch only what queued meanwhile)
    int64_t faiss_threads = 0;      // OpenMP threads per FAISS call (0: 1 for small scans, else all)
};

class Retriever {
public:
    explicit Retriever(const KnowledgeBase & kb, RetrieverOptions options = {});
    ~Retriever();
    Retriever(const Retriever &) = delete;
    Retriever & operator=(const Retriever &) = delete;

    // query: dim floats (normalised here; a zero or non-finite query throws invalid_argument).
    // Hits in selection order (sift) or by decreasing |cos| (faiss); sift may repeat an id.
    std::vector<Hit> search(const float * query, const SearchParams & params);

    // The pre-selection alone: candidate ids by decreasing |⟨x,q⟩| (at most `candidates`).
    std::vector<Hit> preselect(const float * unit_query, const SearchParams & params);

    struct Stats {
        int64_t faiss_calls = 0;
        int64_t queries = 0;
    };
    Stats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ct3::kb
