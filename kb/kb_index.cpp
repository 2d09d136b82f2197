#include "kb/kb_index.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <unistd.h>

#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/OnDiskInvertedLists.h>

#include "kb/kb_files.h"
#include "models/error.h"
#include "models/log.h"

namespace fs = std::filesystem;

namespace ct3::kb {

namespace {

constexpr int64_t kAddChunk = 65536;

// FAISS 1.7.3 prints "resizing <file> to N bytes" on stdout while it sizes on-disk inverted lists.
// stdout carries the program's results (ct3-build-kb's summary JSON), so that chatter is sent to
// stderr for the duration. Only the builder (single-threaded at that point) uses this.
class StdoutToStderr {
public:
    StdoutToStderr() {
        std::fflush(stdout);
        saved_ = ::dup(STDOUT_FILENO);
        if (saved_ >= 0) ::dup2(STDERR_FILENO, STDOUT_FILENO);
    }
    ~StdoutToStderr() {
        std::fflush(stdout);
        if (saved_ >= 0) {
            ::dup2(saved_, STDOUT_FILENO);
            ::close(saved_);
        }
    }
    StdoutToStderr(const StdoutToStderr &) = delete;
    StdoutToStderr & operator=(const StdoutToStderr &) = delete;

private:
    int saved_ = -1;
};

const char * kFactoryExamples = "examples: \"Flat\", \"IVF256,Flat\", \"IVF64,PQ8\", \"HNSW32\", \"OPQ8,IVF64,PQ8\"";

std::unique_ptr<faiss::Index> make_index(const std::string & factory, int64_t dim) {
    CT3_CHECK(!factory.empty(), ErrorKind::invalid_argument, "--index: the FAISS factory string is empty ({})",
              kFactoryExamples);
    std::unique_ptr<faiss::Index> index;
    try {
        index.reset(faiss::index_factory(int(dim), factory.c_str(), faiss::METRIC_INNER_PRODUCT));
    } catch (const faiss::FaissException & e) {
        fail_hint(ErrorKind::invalid_argument, kFactoryExamples,
                  "--index \"{}\": FAISS cannot build this index for dimension {}: {}", factory, dim, e.msg);
    }
    CT3_CHECK(index != nullptr, ErrorKind::invalid_argument, "--index \"{}\": FAISS returned no index", factory);
    CT3_CHECK(index->metric_type == faiss::METRIC_INNER_PRODUCT, ErrorKind::invalid_argument,
              "--index \"{}\": this index type does not support inner-product search (a KB needs it)", factory);
    // index_factory turns on polysemous training for "PQ"/"IVF..,PQ" (unless suffixed "np"). It only
    // serves Hamming-filtered search (polysemous_ht), which a KB never uses, and costs minutes: on
    // 300 vectors, 135 s for "IVF4,PQ8" against 1.8 s without it.
    faiss::Index * inner = index.get();
    if (auto * transform = dynamic_cast<faiss::IndexPreTransform *>(inner)) inner = transform->index;
    if (auto * pq = dynamic_cast<faiss::IndexPQ *>(inner)) pq->do_polysemous_training = false;
    if (auto * ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(inner)) ivfpq->do_polysemous_training = false;
    return index;
}

// Training sample size: the user's, or FAISS's advice (k-means wants at most 256 points per
// centroid; PQ's 256-centroid sub-quantizers make 65536 the useful minimum), never above n.
int64_t sample_size(const IndexBuildOptions & options, int64_t n, int64_t nlist) {
    if (options.train_size > 0) return std::min(options.train_size, n);
    return std::min(n, std::max<int64_t>(256 * nlist, 65536));
}

const char * index_type(const faiss::Index & index) {
    if (faiss::ivflib::try_extract_index_ivf(&index)) return "ivf";
    if (dynamic_cast<const faiss::IndexHNSW *>(&index)) return "hnsw";
    if (dynamic_cast<const faiss::IndexFlat *>(&index)) return "flat";
    return "other";
}

// IVF search default: FAISS's nprobe = 1 misses most neighbours; a KB pre-selects ~1000 candidates,
// so probe a sixteenth of the lists (at least 8). Requests may still override it.
size_t default_nprobe(size_t nlist) { return std::min(nlist, std::max<size_t>(8, nlist / 16)); }

void check_against(const faiss::Index & index, const IndexBuildOptions & options, int64_t n) {
    const faiss::Index * inner = &index;
    if (const auto * transform = dynamic_cast<const faiss::IndexPreTransform *>(inner)) inner = transform->index;
    const faiss::ProductQuantizer * pq = nullptr;
    if (const auto * p = dynamic_cast<const faiss::IndexPQ *>(inner)) pq = &p->pq;
    if (const auto * p = dynamic_cast<const faiss::IndexIVFPQ *>(inner)) pq = &p->pq;
    if (pq != nullptr) {
        const int64_t sample = sample_size(options, n, 0);
        CT3_CHECK(sample >= int64_t(pq->ksub), ErrorKind::invalid_argument,
                  "--index \"{}\": its product quantizer has {} centroids per sub-vector but only {} training "
                  "vectors are available (use fewer bits, e.g. \"PQ{}x4\", or more texts)", options.factory, pq->ksub,
                  sample, pq->M);
    }
    const auto * ivf = faiss::ivflib::try_extract_index_ivf(&index);
    CT3_CHECK(!options.on_disk_lists || ivf, ErrorKind::invalid_argument,
              "--on_disk needs an IVF index (e.g. \"IVF256,Flat\"); --index \"{}\" is not one", options.factory);
    CT3_CHECK(options.train_size >= 0, ErrorKind::invalid_argument, "--train_size must be >= 0 (got {})",
              options.train_size);
    if (!ivf) return;
    const int64_t nlist = int64_t(ivf->nlist);
    if (nlist > n)
        fail_hint(ErrorKind::invalid_argument,
                  fmt::format("use fewer lists, e.g. --index \"IVF{},...\"", std::max<int64_t>(1, int64_t(std::sqrt(double(n))))),
                  "--index \"{}\": {} inverted lists but the KB has only {} texts (each list needs at least one)",
                  options.factory, nlist, n);
    const int64_t sample = sample_size(options, n, nlist);
    CT3_CHECK(sample >= nlist, ErrorKind::invalid_argument,
              "--train_size {} is smaller than the {} inverted lists of --index \"{}\" (k-means needs one point per "
              "list)", options.train_size, nlist, options.factory);
}

}  // namespace

void check_index_options(const IndexBuildOptions & options, int64_t dim, int64_t n) {
    const auto index = make_index(options.factory, dim);
    check_against(*index, options, n);
}

nlohmann::json build_index_files(const float * x, int64_t n, int64_t dim, const IndexBuildOptions & options,
                                 const fs::path & dir) {
    auto log = logger("kb");
    auto index = make_index(options.factory, dim);
    check_against(*index, options, n);
    faiss::IndexIVF * ivf = faiss::ivflib::try_extract_index_ivf(index.get());
    const int64_t nlist = ivf ? int64_t(ivf->nlist) : 0;
    int64_t trained_on = 0;
    try {
        if (!index->is_trained) {
            trained_on = sample_size(options, n, nlist);
            // Evenly spaced rows: deterministic, and spread over every dataset of the KB.
            std::vector<float> sample(size_t(trained_on * dim));
            for (int64_t i = 0; i < trained_on; ++i) {
                const int64_t row = int64_t((__int128)i * n / trained_on);
                std::copy(x + row * dim, x + (row + 1) * dim, sample.data() + i * dim);
            }
            log->info("training index \"{}\" on {} of {} vectors", options.factory, trained_on, n);
            index->train(trained_on, sample.data());
        }
        for (int64_t start = 0; start < n; start += kAddChunk) {
            const int64_t count = std::min(kAddChunk, n - start);
            index->add(count, x + start * dim);
        }
    } catch (const faiss::FaissException & e) {
        fail(ErrorKind::invalid_argument, "--index \"{}\": FAISS failed to build the index over {} vectors: {}",
             options.factory, n, e.msg);
    }
    nlohmann::json info = {{"factory", options.factory}, {"ntotal", int64_t(index->ntotal)},
                           {"on_disk", options.on_disk_lists}, {"type", index_type(*index)}};
    if (trained_on > 0) info["train_size"] = trained_on;
    if (ivf) {
        ivf->nprobe = default_nprobe(ivf->nlist);
        info["nlist"] = nlist;
        info["nprobe"] = int64_t(ivf->nprobe);
    }
    if (const auto * hnsw = dynamic_cast<const faiss::IndexHNSW *>(index.get())) info["ef_search"] = hnsw->hnsw.efSearch;

    const fs::path index_path = dir / kIndexFile;
    const fs::path data_path = dir / kIvfDataFile;
    std::error_code ec;
    fs::remove(data_path, ec);  // a previous attempt's lists; the on-disk lists must start empty
    try {
        if (options.on_disk_lists) {
            // Built in RAM, then copied once into the file: FAISS's advice for on-disk lists.
            auto * on_disk = new faiss::OnDiskInvertedLists(ivf->nlist, ivf->code_size, data_path.c_str());
            {
                StdoutToStderr quiet;
                const faiss::InvertedLists * sources[] = {ivf->invlists};
                on_disk->merge_from(sources, 1);
            }
            ivf->replace_invlists(on_disk, true);
            // index.faiss stores the bare name; read_index_files() maps it from the KB folder.
            on_disk->filename = kIvfDataFile;
        }
        faiss::write_index(index.get(), index_path.c_str());
    } catch (const faiss::FaissException & e) {
        fail(ErrorKind::io, "cannot write the index to '{}': {}", index_path.string(), e.msg);
    }
    index.reset();  // unmaps index.ivfdata before it is fsynced
    fsync_path(index_path);
    if (options.on_disk_lists) fsync_path(data_path);
    return info;
}

std::unique_ptr<faiss::Index> read_index_files(const fs::path & dir, bool on_disk, bool mmap) {
    const fs::path index_path = dir / kIndexFile;
    int flags = faiss::IO_FLAG_READ_ONLY;
    // On-disk lists: skip FAISS's own mapping (it would open the path recorded at build time, or
    // print to stdout with IO_FLAG_ONDISK_SAME_DIR) and map index.ivfdata of this folder below.
    if (on_disk) flags |= faiss::IO_FLAG_SKIP_IVF_DATA;
    else if (mmap) flags |= faiss::IO_FLAG_MMAP;
    std::unique_ptr<faiss::Index> index;
    try {
        index.reset(faiss::read_index(index_path.c_str(), flags));
    } catch (const faiss::FaissException & e) {
        fail(ErrorKind::bad_format, "'{}' is not a readable FAISS index: {}", index_path.string(), e.msg);
    }
    if (!on_disk) return index;
    faiss::IndexIVF * ivf = faiss::ivflib::try_extract_index_ivf(index.get());
    auto * lists = ivf ? dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists) : nullptr;
    CT3_CHECK(lists != nullptr, ErrorKind::bad_format,
              "'{}': manifest.json says index.on_disk = true but the index has no on-disk inverted lists",
              index_path.string());
    const fs::path data_path = dir / kIvfDataFile;
    std::error_code ec;
    const auto bytes = fs::file_size(data_path, ec);
    CT3_CHECK(!ec, ErrorKind::not_found, "'{}' is missing (the on-disk inverted lists of '{}')", data_path.string(),
              index_path.string());
    // A shorter file would be mapped anyway and crash (SIGBUS) on first access of its tail.
    CT3_CHECK(bytes == lists->totsize, ErrorKind::bad_format, "'{}' holds {} bytes (expected {} from '{}')",
              data_path.string(), bytes, lists->totsize, index_path.string());
    lists->filename = data_path.string();
    lists->read_only = true;
    try {
        lists->do_mmap();
    } catch (const faiss::FaissException & e) {
        fail(ErrorKind::io, "cannot map '{}': {}", data_path.string(), e.msg);
    }
    return index;
}

}  // namespace ct3::kb
