// The texts of a KB build: --datasets tokens resolved and read, empty texts and exact duplicates
// dropped (the first occurrence wins, across datasets), with per-dataset counts for the manifest.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kb/datasets.h"

namespace ct3::kb {

struct SourceStats {
    std::string token;      // the --datasets token it came from
    DatasetSpec spec;
    std::string sha256;     // of spec.path
    int64_t rows = 0;       // records read
    int64_t entries = 0;    // texts kept
    int64_t duplicates = 0; // exact duplicates of an earlier text (this or an earlier dataset)
    int64_t empty = 0;      // empty or whitespace-only texts
    int64_t first_id = 0;   // id of its first entry; its entries are contiguous
};

struct BuildInputs {
    std::vector<SourceStats> sources;
    std::vector<std::string> texts;    // entry id -> text
    std::vector<int32_t> source_of;    // entry id -> index into sources
    std::vector<int64_t> rows;         // entry id -> record number in its source file
    int64_t duplicates = 0;
    int64_t empty = 0;

    int64_t size() const { return int64_t(texts.size()); }
};

// Expands "all" to the known datasets present under data_root, resolves every token (refusing
// test splits and a dataset named twice), hashes the files and reads them (limit > 0: the first
// `limit` records of each). Throws ct3::Error naming the token or file; also when no text is left.
BuildInputs read_build_inputs(const std::vector<std::string> & tokens, const std::filesystem::path & data_root,
                              const std::string & text_template, int64_t limit);

// The manifest's "datasets" array.
nlohmann::json sources_json(const BuildInputs & inputs);

}  // namespace ct3::kb
