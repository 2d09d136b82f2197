// Side-by-side comparison of ct3-eval run folders (typically: without TTT, TTT with SIFT retrieval,
// TTT with plain FAISS top-k), on the items every run scored, so that a partial or resumed run never
// skews a delta. The first run is the baseline: accuracy deltas with the items TTT fixed and broke,
// bits per byte before/after with the per-item relative change and its standard error, and the time
// split per query. compare.json for scripts, compare.md + SVG charts for people.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ct3::eval {

struct RunFolder {
    std::string name;
    std::filesystem::path folder;
};

// "NAME=FOLDER" or a bare folder (named by its last component). Throws naming the argument.
RunFolder parse_run_folder(const std::string & spec);

// Throws ct3::Error when fewer than two runs are given, a folder is missing, or no task is shared.
nlohmann::json compare_runs(const std::vector<RunFolder> & runs);

// Writes compare.json, compare.md, accuracy.svg, bpb.svg and time.svg into `out` (atomically).
void write_comparison(const std::filesystem::path & out, const nlohmann::json & comparison);

}  // namespace ct3::eval
