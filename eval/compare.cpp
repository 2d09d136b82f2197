#include "eval/compare.h"

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "eval/report.h"
#include "eval/svg_chart.h"
#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3::eval {

namespace {

// Published bits-per-byte changes from TTT on retrieved neighbours, for the report's context.
const char * kLiterature =
    "Published TTT-on-neighbours bits per byte: Hardt & Sun 2023 (GPT-2 on the Pile, 50 neighbours): "
    "1.208 → 0.992 (−17.9%); SIFT, Hübotter et al. 2024 (Llama-3.2-3B on the Pile): 0.640 → 0.557 (−13.0%).";

double num(const json & j, const char * key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

bool row_correct(const json & row) {
    return row.contains("em") ? row.value("em", 0.0) >= 1.0 : row.value("correct", false);
}

// Mean and standard error of the per-item relative bpb change (after - before) / before.
std::pair<double, double> relative_change_stats(const std::vector<json> & rows) {
    std::vector<double> r;
    for (const json & row : rows) {
        if (!row.contains("bpb_before") || !row.contains("bpb_after")) continue;
        const double before = row["bpb_before"].get<double>();
        if (before > 0) r.push_back((row["bpb_after"].get<double>() - before) / before);
    }
    if (r.empty()) return {0.0, 0.0};
    double mean = 0;
    for (double v : r) mean += v;
    mean /= static_cast<double>(r.size());
    double var = 0;
    for (double v : r) var += (v - mean) * (v - mean);
    const double se = r.size() > 1 ? std::sqrt(var / static_cast<double>(r.size() - 1) / static_cast<double>(r.size())) : 0.0;
    return {mean, se};
}

json run_metadata(const fs::path & folder) {
    const fs::path file = folder / "run.json";
    if (!fs::exists(file)) return json::object();
    try {
        std::ifstream in(file);
        return json::parse(in);
    } catch (const std::exception &) {
        return json::object();
    }
}

}  // namespace

RunFolder parse_run_folder(const std::string & spec) {
    const size_t eq = spec.find('=');
    RunFolder run;
    if (eq == std::string::npos) {
        run.folder = spec;
        run.name = fs::path(spec).lexically_normal().filename().string();
        if (run.name.empty()) run.name = fs::path(spec).lexically_normal().parent_path().filename().string();
    } else {
        run.name = spec.substr(0, eq);
        run.folder = spec.substr(eq + 1);
    }
    CT3_CHECK(!run.name.empty() && !run.folder.empty(), ErrorKind::invalid_argument,
              "run '{}': expected NAME=FOLDER or FOLDER", spec);
    return run;
}

json compare_runs(const std::vector<RunFolder> & runs) {
    CT3_CHECK(runs.size() >= 2, ErrorKind::invalid_argument, "compare needs at least two run folders, got {}",
              runs.size());
    std::vector<std::map<std::string, std::vector<json>>> rows;
    std::set<std::string> names;
    for (const RunFolder & run : runs) {
        CT3_CHECK(fs::is_directory(run.folder), ErrorKind::not_found, "run '{}': {} is not a folder", run.name,
                  run.folder.string());
        CT3_CHECK(names.insert(run.name).second, ErrorKind::invalid_argument, "run name '{}' is given twice",
                  run.name);
        rows.push_back(read_run_rows(run.folder));
    }
    json out = {{"baseline", runs[0].name}, {"runs", json::array()}, {"tasks", json::object()},
                {"skipped", json::object()}};
    for (const RunFolder & run : runs) {
        out["runs"].push_back({{"name", run.name}, {"folder", run.folder.string()}, {"run", run_metadata(run.folder)}});
    }
    std::vector<std::vector<json>> all_rows(runs.size());  // common rows of every task, per run
    std::vector<double> accuracy_sum(runs.size(), 0.0);
    int task_count = 0;
    for (const auto & [task, base_rows] : rows[0]) {
        // The ids every run scored for this task.
        std::set<std::string> common;
        for (const json & row : base_rows) common.insert(row.value("id", std::string()));
        for (size_t r = 1; r < runs.size(); ++r) {
            std::set<std::string> ids, kept;
            auto it = rows[r].find(task);
            if (it != rows[r].end()) {
                for (const json & row : it->second) ids.insert(row.value("id", std::string()));
            }
            for (const std::string & id : common) {
                if (ids.count(id)) kept.insert(id);
            }
            common.swap(kept);
        }
        if (common.empty()) {
            out["skipped"][task] = "no item scored by every run";
            continue;
        }
        ++task_count;
        json t = {{"items", common.size()}, {"runs", json::object()}};
        std::map<std::string, bool> base_correct;
        for (size_t r = 0; r < runs.size(); ++r) {
            std::vector<json> kept;
            for (const json & row : rows[r][task]) {
                if (common.count(row.value("id", std::string()))) kept.push_back(row);
            }
            json s = summarize_rows(kept);
            const auto [rel_mean, rel_se] = relative_change_stats(kept);
            if (s.contains("bpb_before")) {
                s["bpb_item_relative_change_mean"] = rel_mean;
                s["bpb_item_relative_change_se"] = rel_se;
            }
            if (r == 0) {
                for (const json & row : kept) base_correct[row.value("id", std::string())] = row_correct(row);
            } else {
                int fixed = 0, broken = 0;
                for (const json & row : kept) {
                    const bool now = row_correct(row), before = base_correct[row.value("id", std::string())];
                    fixed += (now && !before) ? 1 : 0;
                    broken += (!now && before) ? 1 : 0;
                }
                s["accuracy_delta"] = num(s, "accuracy") - num(t["runs"][runs[0].name], "accuracy");
                s["fixed"] = fixed;
                s["broken"] = broken;
            }
            accuracy_sum[r] += num(s, "accuracy");
            all_rows[r].insert(all_rows[r].end(), kept.begin(), kept.end());
            t["runs"][runs[r].name] = s;
        }
        out["tasks"][task] = t;
    }
    CT3_CHECK(task_count > 0, ErrorKind::invalid_argument,
              "the runs share no scored item: check that the folders hold ct3-eval results of the same tasks");
    json overall = {{"items", all_rows[0].size()}, {"runs", json::object()}};
    for (size_t r = 0; r < runs.size(); ++r) {
        json s = summarize_rows(all_rows[r]);
        s["accuracy_macro"] = accuracy_sum[r] / task_count;
        const auto [rel_mean, rel_se] = relative_change_stats(all_rows[r]);
        if (s.contains("bpb_before")) {
            s["bpb_item_relative_change_mean"] = rel_mean;
            s["bpb_item_relative_change_se"] = rel_se;
        }
        if (r > 0) s["accuracy_delta"] = num(s, "accuracy") - num(overall["runs"][runs[0].name], "accuracy");
        overall["runs"][runs[r].name] = s;
    }
    out["overall"] = overall;
    return out;
}

void write_comparison(const fs::path & out, const json & comparison) {
    fs::create_directories(out);
    kb::write_file_atomic(out / "compare.json", comparison.dump(2) + "\n");
    std::vector<std::string> names;
    for (const json & run : comparison["runs"]) names.push_back(run["name"].get<std::string>());
    const std::string & base = names[0];
    auto cell_accuracy = [&](const json & s, bool is_base) {
        std::string cell = fmt::format("{:.3f}", num(s, "accuracy"));
        if (!is_base) {
            cell += fmt::format(" ({:+.3f}", num(s, "accuracy_delta"));
            if (s.contains("fixed")) cell += fmt::format("; +{} / −{}", num(s, "fixed"), num(s, "broken"));
            cell += ")";
        }
        return cell;
    };
    std::ostringstream md;
    md << "# ct3-eval comparison\n\nBaseline: **" << base << "**. Every figure is over the items that all runs "
       << "scored (a resumed or partial run cannot skew a delta).\n\n| run | folder | arguments |\n|---|---|---|\n";
    for (const json & run : comparison["runs"]) {
        std::string args;
        if (run["run"].contains("args")) {
            for (const json & a : run["run"]["args"]) args += (args.empty() ? "" : " ") + a.get<std::string>();
        }
        md << "| " << run["name"].get<std::string>() << " | `" << run["folder"].get<std::string>() << "` | "
           << (args.empty() ? "" : "`" + args + "`") << " |\n";
    }
    // Accuracy.
    md << "\n## Accuracy\n\nIn parentheses: the change against " << base
       << ", then the items it turned right (+) and wrong (−).\n\n| task | items |";
    for (const auto & n : names) md << " " << n << " |";
    md << " alt. extraction (" << fmt::format("{}", fmt::join(names, " / ")) << ") |\n|---|---|";
    for (size_t i = 0; i <= names.size(); ++i) md << "---|";
    md << "\n";
    auto accuracy_row = [&](const std::string & label, const json & t, bool macro) {
        md << "| " << label << " | " << num(t, "items") << " |";
        std::vector<std::string> alt;
        for (size_t r = 0; r < names.size(); ++r) {
            const json & s = t["runs"][names[r]];
            md << " " << cell_accuracy(s, r == 0);
            if (macro) md << fmt::format("; macro {:.3f}", num(s, "accuracy_macro"));
            md << " |";
            alt.push_back(fmt::format("{:.3f}", num(s, "accuracy_alt")));
        }
        md << " " << fmt::format("{}", fmt::join(alt, " / ")) << " |\n";
    };
    for (const auto & [task, t] : comparison["tasks"].items()) accuracy_row(task, t, false);
    accuracy_row("**all**", comparison["overall"], true);
    md << "\nGSM8K: strict-match, alt. = flexible-extract. MathQA/AQuA: corrected option-letter extraction, alt. = the "
          "original's (first A-E anywhere). CoQA: em, alt. = f1. MBPP/HumanEval: pass@1 (greedy).\n";
    // Bits per byte.
    const bool any_bpb = comparison["overall"]["runs"][base].contains("bpb_before");
    if (any_bpb) {
        md << "\n## Bits per byte\n\nEach item's held-out document (question + solution, problem + code) under the "
              "base model (before) and after TTT on the neighbours retrieved from its question alone. Δ: change of "
              "the mean; per item: mean ± standard error of the per-item relative change.\n\n| task | items | before |";
        for (size_t r = 1; r < names.size(); ++r) md << " " << names[r] << " after (Δ; per item) |";
        md << "\n|---|---|---|";
        for (size_t r = 1; r < names.size(); ++r) md << "---|";
        md << "\n";
        auto bpb_row = [&](const std::string & label, const json & t) {
            const json & b = t["runs"][base];
            if (!b.contains("bpb_before")) return;
            md << "| " << label << " | " << num(b, "bpb_items") << " | " << fmt::format("{:.4f}", num(b, "bpb_before"))
               << " |";
            for (size_t r = 1; r < names.size(); ++r) {
                const json & s = t["runs"][names[r]];
                if (!s.contains("bpb_after")) {
                    md << " |";
                    continue;
                }
                md << fmt::format(" {:.4f} ({:+.1f}%; {:+.2f} ± {:.2f}%) |", num(s, "bpb_after"),
                                  100 * num(s, "bpb_relative_change"), 100 * num(s, "bpb_item_relative_change_mean"),
                                  100 * num(s, "bpb_item_relative_change_se"));
            }
            md << "\n";
        };
        for (const auto & [task, t] : comparison["tasks"].items()) bpb_row(task, t);
        bpb_row("**all**", comparison["overall"]);
        md << "\n" << kLiterature << "\n";
    }
    // Time.
    md << "\n## Time per query (seconds, mean)\n\n| run | retrieve | train | generate | total | TTT rate | cache hits "
          "|\n|---|---|---|---|---|---|---|\n";
    for (const auto & n : names) {
        const json & s = comparison["overall"]["runs"][n];
        md << fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.2f} | {:.2f} |\n", n, num(s, "retrieve_seconds"),
                          num(s, "train_seconds"), num(s, "generate_seconds"), num(s, "seconds_per_query"),
                          num(s, "ttt_rate"), num(s, "cache_hit_rate"));
    }
    if (!comparison["skipped"].empty()) {
        md << "\nSkipped tasks:";
        for (const auto & [task, why] : comparison["skipped"].items()) md << " " << task << " (" << why.get<std::string>() << ")";
        md << "\n";
    }
    md << "\n![accuracy](accuracy.svg)\n" << (any_bpb ? "![bits per byte](bpb.svg)\n" : "") << "![time](time.svg)\n";
    kb::write_file_atomic(out / "compare.md", md.str());

    // Charts: one group per task (and all), one row per run.
    std::vector<BarGroup> accuracy, bpb, time;
    auto add_groups = [&](const std::string & task, const json & t) {
        BarGroup a{task, {}}, b{task, {}}, s{task, {}};
        for (size_t r = 0; r < names.size(); ++r) {
            const json & run = t["runs"][names[r]];
            a.rows.push_back({names[r], {num(run, "accuracy")}});
            if (run.contains("bpb_before")) {
                if (r == 0) b.rows.push_back({"before", {num(run, "bpb_before")}});
                if (r > 0) b.rows.push_back({names[r] + " after", {num(run, "bpb_after")}});
            }
            s.rows.push_back(time_breakdown_row(names[r], run));
        }
        accuracy.push_back(a);
        if (!b.rows.empty()) bpb.push_back(b);
        time.push_back(s);
    };
    for (const auto & [task, t] : comparison["tasks"].items()) add_groups(task, t);
    add_groups("all", comparison["overall"]);
    ChartStyle a_style;
    a_style.title = "Accuracy per task";
    a_style.legend = names;
    a_style.color_by_row = true;
    kb::write_file_atomic(out / "accuracy.svg", bar_chart_svg(accuracy, a_style));
    if (any_bpb) {
        ChartStyle b_style;
        b_style.title = "Bits per byte of the held-out documents (lower is better)";
        b_style.legend = {"before (base model)"};
        for (size_t r = 1; r < names.size(); ++r) b_style.legend.push_back(names[r] + " after TTT");
        b_style.color_by_row = true;
        kb::write_file_atomic(out / "bpb.svg", bar_chart_svg(bpb, b_style));
    }
    kb::write_file_atomic(out / "time.svg", bar_chart_svg(time, time_breakdown_style()));
}

}  // namespace ct3::eval
