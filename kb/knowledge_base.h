// A knowledge base (KB): texts, their unit embeddings and a FAISS index over them, in one folder.
//
// On-disk format (format_version 1); every file is written by ct3 and listed with its sha256 in the
// manifest:
//   manifest.json     {"format": "ct3-kb", "format_version": 1, "created", "ct3_version",
//                      "count", "dim", "metric": "inner_product",
//                      "index": {"factory", "ntotal", "on_disk", "type", "nlist"/"nprobe" (IVF),
//                                "ef_search" (HNSW), "train_size" (trained indexes)},
//                      "embedder": <Embedder::identity()> (+ "state_file" for fitted state, + "path"
//                                  of the model folder for sentence-transformers; neither is part
//                                  of the identity),
//                      "datasets": [{"name", "token", "reader", "path", "sha256", "rows", "entries",
//                                    "duplicates", "empty", "first_id"}] in id order (the entries of
//                                    one dataset are the ids first_id .. first_id + entries - 1),
//                      "duplicates": <texts dropped as exact duplicates, over all datasets>,
//                      "empty": <empty or whitespace-only texts dropped, over all datasets>,
//                      "files": {"<name>": {"bytes", "sha256"}},
//                      "build": {"seconds", "texts_per_second", "resumed_texts", "args"}}
//   index.faiss       faiss::write_index of an inner-product index (factory string in the manifest);
//                     with on-disk inverted lists also index.ivfdata (loaded from the same folder).
//   embeddings.f32    raw little-endian float32, [count, dim] row-major; row i belongs to entry i.
//                     Kept beside the index so SIFT sees exact vectors whatever the index type
//                     (PQ codes only approximate them) and so an index can be rebuilt.
//   texts.jsonl       one JSON object per entry, in id order: {"id", "dataset", "row", "text"}
//                     (`row` = 0-based record number in the dataset's source file).
//   texts.idx         little-endian uint64 byte offsets of each line of texts.jsonl, count + 1 of
//                     them (the last is the file size), so texts are read lazily from an mmap.
//   embedder/         fitted embedder state when the embedder has one (hashed: hashed.bin).
// Large files are mmapped, so a KB larger than RAM still opens (with an on-disk IVF index).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace faiss {
struct Index;
}

namespace ct3 {
class Embedder;
}

namespace ct3::kb {

inline constexpr int kFormatVersion = 1;
inline constexpr const char * kFormatName = "ct3-kb";

struct Entry {
    int64_t id = -1;
    std::string dataset;
    int64_t row = -1;
    std::string text;
};

struct OpenOptions {
    bool verify_checksums = true;   // sha256 of every file against the manifest (refuses mismatches)
    bool load_embedder = true;      // the KB's embedder (needed to embed text queries)
    std::string embedder_device = "cpu";
    // sentence-transformers KBs: the model folder, when it moved since the build (default: the
    // manifest's embedder.path). Its identity must still equal the manifest's.
    std::string embedder_path;
    // Read inverted lists from disk on demand (IVF indexes written with on-disk lists) instead of RAM.
    bool mmap_index = false;
};

class KnowledgeBase {
public:
    // Opens and verifies a KB folder: manifest format and version, file sizes and checksums,
    // index dim/ntotal/metric against the manifest, embedder identity against the stored state.
    // Throws ct3::Error naming the folder, file and field on any mismatch.
    static std::unique_ptr<KnowledgeBase> open(const std::filesystem::path & dir, const OpenOptions & options = {});

    virtual ~KnowledgeBase() = default;

    virtual const std::filesystem::path & dir() const = 0;
    virtual const nlohmann::json & manifest() const = 0;
    virtual int64_t size() const = 0;  // number of entries (== index ntotal)
    virtual int64_t dim() const = 0;

    // The FAISS index. Searching it concurrently is safe; never mutate it.
    virtual const faiss::Index & index() const = 0;
    // Unit embedding of entry `id` (dim floats, valid while the KB lives).
    virtual const float * embedding(int64_t id) const = 0;
    virtual Entry entry(int64_t id) const = 0;  // throws ct3::Error (not_found) when out of range
    virtual std::string text(int64_t id) const = 0;
    virtual std::string dataset(int64_t id) const = 0;

    // The KB's embedder (same identity as at build time). Throws ct3::Error (unavailable) when the
    // KB was opened without it. Embedder::embed is not assumed thread-safe: callers serialise.
    virtual Embedder & embedder() = 0;
    virtual const nlohmann::json & embedder_identity() const = 0;
};

}  // namespace ct3::kb
