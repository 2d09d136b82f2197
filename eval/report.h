// The evaluation report of one run folder: per-task accuracy (both extractions), bits per byte
// before/after TTT, TTT and cache rates, and the time split per query, from the per-item JSONL
// files ct3-eval writes (one per task, or one per task and shard). summary.json for scripts,
// report.md + SVG bar charts for people.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/svg_chart.h"

namespace ct3::eval {

// The scored rows of every *.jsonl in `folder`, by task (the row's "task", else the file name up to
// its first dot), one per item id: the first row wins, unless it recorded an error and a later one did not. Lines that do not parse (a crash
// mid-write) are skipped.
std::map<std::string, std::vector<nlohmann::json>> read_run_rows(const std::filesystem::path & folder);

// Accuracy, alt. accuracy, rates, bpb before/after and mean seconds over `rows`.
nlohmann::json summarize_rows(const std::vector<nlohmann::json> & rows);

// {"folder": ..., "tasks": {task: summarize_rows(...)}} over read_run_rows(folder).
nlohmann::json summarize_folder(const std::filesystem::path & folder);

// One stacked bar of a summary's seconds per query: retrieve, train, generate, other; and the style
// (title, legend, unit) of a chart of such bars.
BarRow time_breakdown_row(const std::string & label, const nlohmann::json & summary);
ChartStyle time_breakdown_style();

// Writes summary.json, report.md, accuracy.svg and time.svg into `folder` (each atomically).
void write_report(const std::filesystem::path & folder, const nlohmann::json & summary);

}  // namespace ct3::eval
