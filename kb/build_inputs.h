// The texts of a KB build: --datasets tokens resolved and read, empty texts, texts that overlap an
// evaluation set (decontamination, see kb/test_overlap.h) and exact duplicates dropped (the first
// occurrence wins, across datasets), with per-dataset counts for the manifest.
//
// Why decontaminate: a KB holding a test item lets TTT retrieval hand the model that test question
// with its answer, so every score measured with the KB would be meaningless. Some train sources are
// mostly test items (llm_adapters/math_data.json: ~70% of its records are GSM8K/SVAMP/MAWPS/AQuA
// test items), so the check is on by default; ct3-build-kb --keep_test_overlap turns it off for a
// KB meant for something other than our evaluation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kb/datasets.h"
#include "kb/test_overlap.h"

namespace ct3::kb {

struct SourceStats {
    std::string token;      // the --datasets token it came from
    DatasetSpec spec;
    std::string sha256;     // of spec.path
    int64_t rows = 0;       // records read
    int64_t entries = 0;    // texts kept
    int64_t duplicates = 0; // exact duplicates of an earlier text (this or an earlier dataset)
    int64_t test_overlap = 0; // texts overlapping an evaluation set (exact or n-gram), when decontaminating
    std::map<std::string, int64_t> test_overlap_by_set;  // of test_overlap: evaluation set -> texts
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
    int64_t test_overlap = 0;
    bool decontaminated = false;        // texts were checked against the evaluation sets
    int ngram = 0;                      // n-gram length of that check (0 when not decontaminated)
    std::vector<TestSetInfo> test_sets; // the evaluation sets found under the data root and checked

    int64_t size() const { return int64_t(texts.size()); }
};

// Expands "all" to the known datasets present under data_root, resolves every token (refusing
// test splits and a dataset named twice), hashes the files and reads them (limit > 0: the first
// `limit` records of each). decontaminate: texts overlapping an evaluation set under data_root
// (exact or 13-gram, kb/test_overlap.h) are dropped and counted; evaluation sets absent under the
// data root are skipped with a warning (none present: nothing is dropped). Throws ct3::Error naming
// the token or file; also when no text is left.
BuildInputs read_build_inputs(const std::vector<std::string> & tokens, const std::filesystem::path & data_root,
                              const std::string & text_template, int64_t limit, bool decontaminate);

// The manifest's "datasets" array.
nlohmann::json sources_json(const BuildInputs & inputs);

// The manifest's "decontamination" object: {"enabled", "ngram", "test_sets": [{"name", "records"}],
// "dropped"}.
nlohmann::json decontamination_json(const BuildInputs & inputs);

}  // namespace ct3::kb
