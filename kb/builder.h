// KB builder: datasets -> decontaminated, deduplicated texts (kb/build_inputs.h) -> embeddings ->
// FAISS index -> KB folder.
//
// The build works in `<save_dir>.partial/` and renames it to save_dir only when complete, so a
// reader never sees a half-written KB. Texts are embedded in shards of `shard_size`; each finished
// shard is fsynced and recorded in the partial folder's progress file, and a killed build run again
// with the same arguments resumes after the last complete shard (no duplicates, no gaps). Arguments
// that change the result (datasets, files, template, embedder, limit, shard size, decontamination
// and the evaluation sets it checked) are fingerprinted;
// resuming with different ones is refused with a hint to pass restart.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ct3::kb {

struct BuildOptions {
    std::vector<std::string> datasets;   // --datasets tokens (see datasets.h); "all" = every known one present
    std::filesystem::path data_root;     // default: $CT3_DATA_DIR or ../shared/data
    std::string text_template;           // for PATH datasets
    std::string embedder = "hashed";     // load_embedder spec; a hashed embedder is fitted on the KB texts
    std::string device = "cpu";
    int64_t embed_batch_size = 64;
    std::string index_factory = "Flat";  // FAISS factory string, always METRIC_INNER_PRODUCT
    bool on_disk_lists = false;          // IVF only: inverted lists in index.ivfdata, mmapped at load
    int64_t train_size = 0;              // IVF/PQ training sample (0 = all, capped by FAISS advice)
    int64_t limit_per_dataset = 0;       // 0 = all records (the original's --debug took 100)
    bool decontaminate = true;           // drop texts overlapping the data root's evaluation sets
                                         // (off: --keep_test_overlap, for a KB not used on our evaluation)
    int64_t shard_size = 4096;
    std::filesystem::path save_dir = "knowledge_base";
    bool overwrite = false;              // replace an existing save_dir
    bool restart = false;                // discard a partial build instead of resuming
    std::vector<std::string> args;       // the command line, recorded in the manifest
};

struct BuildProgress {
    int64_t done = 0;     // texts embedded so far (including resumed shards)
    int64_t total = 0;
    int64_t resumed = 0;  // of `done`, texts taken from a previous partial build
    double seconds = 0;   // time spent embedding in this run (rate = (done - resumed) / seconds)
};

struct BuildReport {
    nlohmann::json manifest;
    int64_t resumed_texts = 0;  // texts taken from a previous partial build
    double seconds = 0;
};

// Throws ct3::Error naming the dataset, file or option on failure; the partial folder is kept so
// the build can resume. `on_progress` is called after every shard.
BuildReport build_kb(const BuildOptions & options, const std::function<void(const BuildProgress &)> & on_progress = {});

// Default data root: $CT3_DATA_DIR, else ../shared/data relative to the current directory, else
// relative to the executable's source tree.
std::filesystem::path default_data_root();

// The current time as written in manifests and run files: "2026-12-02T05:18:34Z".
std::string utc_now();

}  // namespace ct3::kb
