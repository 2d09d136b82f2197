#include "kb/retriever.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include "kb/knowledge_base.h"
#include "kb/sift.h"
#include "models/error.h"
#include "models/log.h"

namespace ct3::kb {

const char * search_mode_name(SearchMode mode) { return mode == SearchMode::sift ? "sift" : "faiss"; }

SearchMode parse_search_mode(const std::string & name) {
    if (name == "sift") return SearchMode::sift;
    if (name == "faiss") return SearchMode::faiss;
    fail(ErrorKind::invalid_argument, "mode must be \"sift\" or \"faiss\" (got \"{}\")", name);
}

void SearchParams::validate(int64_t max_k) const {
    CT3_CHECK(k >= 1 && k <= max_k, ErrorKind::invalid_argument, "k must be between 1 and {} (got {})", max_k, k);
    CT3_CHECK(candidates >= 1 && candidates <= 100000, ErrorKind::invalid_argument,
              "candidates must be between 1 and 100000 (got {})", candidates);
    CT3_CHECK(std::isfinite(lambda) && lambda > 0, ErrorKind::invalid_argument,
              "lambda must be a positive finite number (got {})", lambda);
    CT3_CHECK(nprobe >= 0 && nprobe <= 1000000, ErrorKind::invalid_argument,
              "nprobe must be between 0 and 1000000 (got {})", nprobe);
    CT3_CHECK(ef_search >= 0 && ef_search <= 1000000, ErrorKind::invalid_argument,
              "ef_search must be between 0 and 1000000 (got {})", ef_search);
}

namespace {

// faiss::idx_t moved out of faiss::Index after 1.7.3; ntotal has that type in every version.
using FaissId = decltype(faiss::Index::ntotal);

// Queries whose FAISS searches can share one call: same candidate count and index parameters.
struct BatchKey {
    int64_t candidates;
    int64_t nprobe;
    int64_t ef_search;
    bool opposite;
    bool operator==(const BatchKey & o) const {
        return candidates == o.candidates && nprobe == o.nprobe && ef_search == o.ef_search && opposite == o.opposite;
    }
};

// What the batching worker hands back: hits, or the error as plain data. No exception object
// crosses threads: std::exception_ptr and std::runtime_error's message are reference-counted
// inside libstdc++, whose counters ThreadSanitizer cannot see, so whichever thread let go last
// would appear to race the other's what(). The waiter throws a fresh ct3::Error itself.
struct Outcome {
    std::vector<Hit> hits;
    bool failed = false;
    ErrorKind kind = ErrorKind::internal;
    std::string message, hint;
};

struct Pending {
    BatchKey key;
    const float * query;  // unit query, dim floats, owned by the waiting caller
    std::promise<Outcome> result;
};

// Index-specific search parameters (nprobe for IVF, efSearch for HNSW), possibly behind a
// pre-transform (OPQ, PCA). Holds the objects FAISS points into.
struct IndexSearchParams {
    faiss::SearchParametersIVF ivf;
    faiss::SearchParametersHNSW hnsw;
    faiss::SearchParametersPreTransform pre_transform;
    const faiss::SearchParameters * params = nullptr;

    IndexSearchParams(const faiss::Index & index, const BatchKey & key) {
        const faiss::Index * inner = &index;
        const auto * transform = dynamic_cast<const faiss::IndexPreTransform *>(inner);
        if (transform) inner = transform->index;
        const faiss::SearchParameters * chosen = nullptr;
        if (key.nprobe > 0) {
            const auto * ivf_index = faiss::ivflib::try_extract_index_ivf(inner);
            CT3_CHECK(ivf_index, ErrorKind::invalid_argument,
                      "nprobe applies to IVF indexes only; this knowledge base's index is not IVF");
            ivf.nprobe = size_t(key.nprobe);
            chosen = &ivf;
        }
        if (key.ef_search > 0) {
            CT3_CHECK(dynamic_cast<const faiss::IndexHNSW *>(inner), ErrorKind::invalid_argument,
                      "ef_search applies to HNSW indexes only; this knowledge base's index is not HNSW");
            hnsw.efSearch = int(key.ef_search);
            chosen = &hnsw;
        }
        if (chosen && transform) {
            pre_transform.index_params = const_cast<faiss::SearchParameters *>(chosen);
            chosen = &pre_transform;
        }
        params = chosen;
    }
};

}  // namespace

struct Retriever::Impl {
    const KnowledgeBase & kb;
    RetrieverOptions options;
    int64_t dim;

    std::mutex mutex;
    std::condition_variable wake;
    std::deque<Pending *> queue;
    bool stopping = false;
    Stats stats;
    std::thread worker;

    int default_threads = omp_get_max_threads();

    Impl(const KnowledgeBase & kb_, RetrieverOptions options_) : kb(kb_), options(options_), dim(kb_.dim()) {
        CT3_CHECK(options.max_batch >= 1, ErrorKind::invalid_argument, "retriever max_batch must be >= 1 (got {})",
                  options.max_batch);
        CT3_CHECK(options.batch_window_us >= 0, ErrorKind::invalid_argument,
                  "retriever batch_window_us must be >= 0 (got {})", options.batch_window_us);
        // FAISS scans a flat index query by query below 20 queries, with the SIMD level it was
        // compiled for (Debian: baseline x86-64); from 20 up it calls BLAS (OpenBLAS picks AVX2/
        // AVX-512 at run time). Measured on a 2-core VM, one q/−q search (K=1000) over 17k x 384:
        // 16 ms -> 11 ms; over 1M x 384: 0.86 s -> 0.44 s. So every search takes the BLAS path
        // (results differ only in the order of exact ties). Process-wide by FAISS's design.
        faiss::distance_compute_blas_threshold = 1;
        worker = std::thread([this] { run(); });
    }

    ~Impl() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            stopping = true;
        }
        wake.notify_all();
        worker.join();
    }

    // The batching loop: whatever queued while FAISS was busy goes into the next call, so a lone
    // query never waits (unless batch_window_us asks for it) and a burst shares one search.
    void run() {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            wake.wait(lock, [this] { return stopping || !queue.empty(); });
            if (queue.empty()) return;  // stopping with nothing left
            if (options.batch_window_us > 0 && int64_t(queue.size()) < options.max_batch) {
                wake.wait_for(lock, std::chrono::microseconds(options.batch_window_us),
                              [this] { return stopping || int64_t(queue.size()) >= options.max_batch; });
            }
            std::vector<Pending *> batch;
            const BatchKey key = queue.front()->key;
            for (auto it = queue.begin(); it != queue.end() && int64_t(batch.size()) < options.max_batch;) {
                if ((*it)->key == key) {
                    batch.push_back(*it);
                    it = queue.erase(it);
                } else {
                    ++it;
                }
            }
            stats.faiss_calls += 1;
            stats.queries += int64_t(batch.size());
            lock.unlock();
            search_batch(batch, key);
            lock.lock();
        }
    }

    void search_batch(const std::vector<Pending *> & batch, const BatchKey & key) {
        try {
            const auto & index = kb.index();
            const int64_t k = std::min<int64_t>(key.candidates, index.ntotal);
            const int64_t per_query = key.opposite ? 2 : 1;
            const int64_t nq = int64_t(batch.size()) * per_query;
            std::vector<float> queries(size_t(nq * dim));
            for (size_t b = 0; b < batch.size(); ++b) {
                float * q = queries.data() + int64_t(b) * per_query * dim;
                std::copy(batch[b]->query, batch[b]->query + dim, q);
                if (key.opposite)
                    for (int64_t i = 0; i < dim; ++i) q[dim + i] = -batch[b]->query[i];
            }
            std::vector<float> distances(size_t(nq * std::max<int64_t>(k, 1)));
            std::vector<FaissId> labels(distances.size(), -1);
            if (k > 0) {
                // OpenMP threads only pay off on large scans; on small ones their start-up and
                // spinning (ruinous on a busy machine) cost more than the search itself.
                const double work = double(index.ntotal) * double(dim) * double(nq);
                const int threads = options.faiss_threads > 0 ? int(options.faiss_threads)
                                    : work < 3e7              ? 1
                                                              : default_threads;
                omp_set_num_threads(threads);  // per calling thread: this worker's searches only
                IndexSearchParams params(index, key);
                index.search(nq, queries.data(), k, distances.data(), labels.data(), params.params);
            }
            for (size_t b = 0; b < batch.size(); ++b)
                batch[b]->result.set_value(Outcome{merge(distances.data() + int64_t(b) * per_query * k,
                                                         labels.data() + int64_t(b) * per_query * k, k, per_query)});
        } catch (const faiss::FaissException & e) {
            fail_batch(batch, ErrorKind::internal, fmt::format("FAISS search failed: {}", e.msg));
        } catch (const Error & e) {
            fail_batch(batch, e.kind(), e.message(), e.hint());
        } catch (const std::exception & e) {
            fail_batch(batch, ErrorKind::internal, e.what());
        } catch (...) {
            fail_batch(batch, ErrorKind::internal, "unknown exception in the retriever's search");
        }
    }

    static void fail_batch(const std::vector<Pending *> & batch, ErrorKind kind, const std::string & message,
                           const std::string & hint = {}) {
        for (auto * p : batch) p->result.set_value(Outcome{{}, true, kind, message, hint});
    }

    // Merges the q and −q result lists (each sorted by score) into the top k by |⟨x,q⟩|.
    static std::vector<Hit> merge(const float * distances, const FaissId * labels, int64_t k, int64_t lists) {
        std::vector<Hit> all;
        all.reserve(size_t(k * lists));
        for (int64_t l = 0; l < lists; ++l)
            for (int64_t i = 0; i < k; ++i) {
                const FaissId id = labels[l * k + i];
                if (id < 0) continue;  // FAISS pads with -1 when fewer results exist
                const double d = distances[l * k + i];
                all.push_back({int64_t(id), d, l == 0 ? d : -d});
            }
        std::stable_sort(all.begin(), all.end(), [](const Hit & a, const Hit & b) { return a.score > b.score; });
        std::vector<Hit> merged;
        merged.reserve(size_t(k));
        std::unordered_set<int64_t> seen;
        for (const Hit & h : all) {
            if (int64_t(merged.size()) == k) break;
            if (!seen.insert(h.id).second) continue;
            merged.push_back(h);
        }
        return merged;
    }

    std::vector<Hit> preselect(const float * unit_query, const SearchParams & params) {
        Pending pending{{params.candidates, params.nprobe, params.ef_search, params.also_query_opposite},
                        unit_query,
                        {}};
        auto future = pending.result.get_future();
        {
            std::lock_guard<std::mutex> lock(mutex);
            CT3_CHECK(!stopping, ErrorKind::unavailable, "the retriever is shutting down");
            queue.push_back(&pending);
        }
        wake.notify_one();
        Outcome outcome = future.get();
        if (outcome.failed) throw Error(outcome.kind, std::move(outcome.message), std::move(outcome.hint));
        return std::move(outcome.hits);
    }
};

Retriever::Retriever(const KnowledgeBase & kb, RetrieverOptions options)
    : impl_(std::make_unique<Impl>(kb, options)) {}

Retriever::~Retriever() = default;

Retriever::Stats Retriever::stats() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->stats;
}

std::vector<Hit> Retriever::preselect(const float * unit_query, const SearchParams & params) {
    return impl_->preselect(unit_query, params);
}

std::vector<Hit> Retriever::search(const float * query, const SearchParams & params) {
    params.validate();
    const int64_t dim = impl_->dim;
    std::vector<float> unit(query, query + dim);
    double norm_sq = 0;
    for (float v : unit) {
        CT3_CHECK(std::isfinite(v), ErrorKind::invalid_argument, "query embedding has a non-finite component");
        norm_sq += double(v) * v;
    }
    CT3_CHECK(norm_sq > 0, ErrorKind::invalid_argument, "query embedding is all zeros");
    const float inv_norm = float(1.0 / std::sqrt(norm_sq));
    for (float & v : unit) v *= inv_norm;

    SearchParams effective = params;
    if (params.mode == SearchMode::faiss) effective.candidates = std::max(params.candidates, params.k);
    std::vector<Hit> candidates = preselect(unit.data(), effective);
    const KnowledgeBase & kb = impl_->kb;
    auto exact_similarity = [&](int64_t id) {
        return double(faiss::fvec_inner_product(kb.embedding(id), unit.data(), size_t(dim)));
    };
    if (params.mode == SearchMode::faiss) {
        if (int64_t(candidates.size()) > params.k) candidates.resize(size_t(params.k));
        for (Hit & h : candidates) h.similarity = exact_similarity(h.id);
        return candidates;
    }
    if (candidates.empty()) return {};
    const int64_t K = int64_t(candidates.size());
    std::vector<float> matrix(size_t(K * dim));
    for (int64_t i = 0; i < K; ++i) {
        const float * x = kb.embedding(candidates[size_t(i)].id);
        std::copy(x, x + dim, matrix.data() + i * dim);
    }
    const auto picks = sift_select(matrix.data(), K, unit.data(), dim, params.k, params.lambda);
    std::vector<Hit> hits;
    hits.reserve(picks.size());
    for (const SiftPick & p : picks) {
        const int64_t id = candidates[size_t(p.candidate)].id;
        hits.push_back({id, p.variance, exact_similarity(id)});
    }
    return hits;
}

}  // namespace ct3::kb
