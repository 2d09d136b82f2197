// The FAISS index of a KB: factory string -> inner-product index, training sample, on-disk inverted
// lists, search defaults; and reading it back from a KB folder.
//
// Every index uses METRIC_INNER_PRODUCT (KB vectors are unit, so scores are cosines). Factory strings
// are FAISS's own ("Flat", "IVF256,Flat", "IVF64,PQ8", "HNSW32", "OPQ8,IVF64,PQ8", ...).
// With on-disk lists (IVF only) the codes live in index.ivfdata beside index.faiss; index.faiss
// records the bare file name, so the folder can move, and open() maps the file from the KB folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace faiss {
struct Index;
}

namespace ct3::kb {

inline constexpr const char * kIndexFile = "index.faiss";
inline constexpr const char * kIvfDataFile = "index.ivfdata";

struct IndexBuildOptions {
    std::string factory = "Flat";
    bool on_disk_lists = false;
    int64_t train_size = 0;  // 0: min(n, FAISS's advice: 256 points per centroid, at least 65536)
};

// Checks, before any embedding work, that `factory` builds an inner-product index for n vectors of
// dimension dim with these options (IVF lists <= n and <= the training sample, on-disk lists only
// for IVF). Throws ct3::Error (invalid_argument) naming the factory string.
void check_index_options(const IndexBuildOptions & options, int64_t dim, int64_t n);

// Builds the index over x [n, dim] (trained on an evenly spaced sample, so the result depends only
// on the vectors), sets search defaults (IVF nprobe), writes dir/index.faiss (+ dir/index.ivfdata)
// and fsyncs them. Returns the manifest's "index" object: factory, ntotal, on_disk, type, nlist,
// nprobe, train_size.
nlohmann::json build_index_files(const float * x, int64_t n, int64_t dim, const IndexBuildOptions & options,
                                 const std::filesystem::path & dir);

// Reads dir/index.faiss. on_disk: the inverted lists are mapped from dir/index.ivfdata (read only);
// mmap (IVF with lists stored inside index.faiss): the lists are mapped from index.faiss instead of
// read into RAM. Throws ct3::Error (bad_format) naming the file on a FAISS read failure.
std::unique_ptr<faiss::Index> read_index_files(const std::filesystem::path & dir, bool on_disk, bool mmap);

}  // namespace ct3::kb
