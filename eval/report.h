// The evaluation report of one run folder: per-task accuracy (both extractions), bits per byte
// before/after TTT, TTT and cache rates, and the time split per query, from the per-item JSONL
// files ct3-eval writes. summary.json for scripts, report.md + SVG bar charts for people.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

namespace ct3::eval {

// Reads every <task>.jsonl in `folder`. Lines that do not parse (a crash mid-write) are skipped.
nlohmann::json summarize_folder(const std::filesystem::path & folder);

// Writes summary.json, report.md, accuracy.svg and time.svg into `folder` (each atomically).
void write_report(const std::filesystem::path & folder, const nlohmann::json & summary);

}  // namespace ct3::eval
