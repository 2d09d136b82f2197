#include "eval/report.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "eval/svg_chart.h"
#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::eval {

namespace {

double mean_of(double sum, double n) {
    return n > 0 ? sum / n : 0.0;
}

}  // namespace

std::map<std::string, std::vector<nlohmann::json>> read_run_rows(const fs::path & folder) {
    std::vector<fs::path> files;
    for (const auto & entry : fs::directory_iterator(folder)) {
        if (entry.path().extension() == ".jsonl") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    std::map<std::string, std::vector<nlohmann::json>> tasks;
    std::map<std::string, std::map<std::string, size_t>> seen;  // task -> id -> index in tasks[task]
    for (const fs::path & file : files) {
        const std::string name = file.filename().string();
        const std::string file_task = name.substr(0, name.find('.'));
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            nlohmann::json row;
            try {
                row = nlohmann::json::parse(line);
            } catch (const std::exception &) {
                continue;
            }
            if (!row.is_object() || !row.contains("correct")) continue;
            const std::string task = row.contains("task") && row["task"].is_string() ? row["task"].get<std::string>()
                                                                                        : file_task;
            const std::string id = row.contains("id") && row["id"].is_string() ? row["id"].get<std::string>() : "";
            auto & rows = tasks[task];
            if (!id.empty()) {
                const auto [it, fresh] = seen[task].emplace(id, rows.size());
                if (!fresh) {
                    // A rerun of an item whose first attempt recorded an error replaces it.
                    if (rows[it->second].contains("error") && !row.contains("error")) rows[it->second] = std::move(row);
                    continue;
                }
            }
            rows.push_back(std::move(row));
        }
    }
    return tasks;
}

nlohmann::json summarize_rows(const std::vector<nlohmann::json> & rows) {
    double n = 0, correct = 0, correct_alt = 0, ttt = 0, hits = 0, errors = 0, bpb_n = 0, bpb_before = 0,
           bpb_after = 0;
    double t_total = 0, t_train = 0, t_generate = 0, t_retrieve = 0;
    for (const nlohmann::json & row : rows) {
        n += 1;
        if (row.contains("em")) {  // coqa: accuracy = em, alt. = f1 (both may be fractional)
            correct += row.value("em", 0.0);
            correct_alt += row.value("f1", 0.0);
        } else {
            correct += row.value("correct", false) ? 1 : 0;
            correct_alt += row.value("correct_alt", false) ? 1 : 0;
        }
        ttt += row.value("ttt", false) ? 1 : 0;
        hits += row.value("cache", std::string()) == "hit" ? 1 : 0;
        errors += row.contains("error") ? 1 : 0;
        if (row.contains("bpb_before") && row.contains("bpb_after")) {
            bpb_n += 1;
            bpb_before += row["bpb_before"].get<double>();
            bpb_after += row["bpb_after"].get<double>();
        }
        if (row.contains("timings_ms") && row["timings_ms"].is_object()) {
            const auto & t = row["timings_ms"];
            t_total += t.value("total", 0.0);
            t_train += t.value("train", 0.0);
            t_generate += t.value("generate", 0.0);
            t_retrieve += t.value("retrieve", 0.0) + t.value("embed", 0.0);
        }
    }
    nlohmann::json s = {{"items", n},
                        {"errors", errors},
                        {"accuracy", mean_of(correct, n)},
                        {"accuracy_alt", mean_of(correct_alt, n)},
                        {"ttt_rate", mean_of(ttt, n)},
                        {"cache_hit_rate", mean_of(hits, n)},
                        {"seconds_per_query", mean_of(t_total, n) / 1000},
                        {"train_seconds", mean_of(t_train, n) / 1000},
                        {"generate_seconds", mean_of(t_generate, n) / 1000},
                        {"retrieve_seconds", mean_of(t_retrieve, n) / 1000}};
    if (bpb_n > 0) {
        const double before = bpb_before / bpb_n, after = bpb_after / bpb_n;
        s["bpb_items"] = bpb_n;
        s["bpb_before"] = before;
        s["bpb_after"] = after;
        s["bpb_relative_change"] = before > 0 ? (after - before) / before : 0.0;
    }
    return s;
}

BarRow time_breakdown_row(const std::string & label, const nlohmann::json & s) {
    auto get = [&](const char * key) { return s.contains(key) && s[key].is_number() ? s[key].get<double>() : 0.0; };
    const double other = std::max(0.0, get("seconds_per_query") - get("retrieve_seconds") - get("train_seconds") -
                                            get("generate_seconds"));
    return {label, {get("retrieve_seconds"), get("train_seconds"), get("generate_seconds"), other}};
}

ChartStyle time_breakdown_style() {
    ChartStyle style;
    style.title = "Seconds per query";
    style.unit = " s";
    style.value_decimals = 2;
    style.legend = {"retrieve", "train", "generate", "other"};
    return style;
}

nlohmann::json summarize_folder(const fs::path & folder) {
    nlohmann::json tasks = nlohmann::json::object();
    for (const auto & [task, rows] : read_run_rows(folder)) tasks[task] = summarize_rows(rows);
    return {{"folder", folder.string()}, {"tasks", tasks}};
}

void write_report(const fs::path & folder, const nlohmann::json & summary) {
    kb::write_file_atomic(folder / "summary.json", summary.dump(2) + "\n");
    std::ostringstream md;
    md << "# ct3-eval report: " << folder.filename().string() << "\n\n"
       << "| task | items | accuracy | alt. extraction | TTT rate | cache hits | bpb before | bpb after | Δ bpb | "
          "s/query "
          "(retrieve / train / generate) |\n|---|---|---|---|---|---|---|---|---|---|\n";
    std::vector<BarGroup> accuracy(1), seconds(1);
    for (const auto & [name, s] : summary["tasks"].items()) {
        const bool bpb = s.contains("bpb_before");
        md << "| " << name << " | " << s["items"].get<double>() << " | "
           << fmt::format("{:.3f}", s["accuracy"].get<double>()) << " | "
           << fmt::format("{:.3f}", s["accuracy_alt"].get<double>()) << " | "
           << fmt::format("{:.2f}", s["ttt_rate"].get<double>()) << " | "
           << fmt::format("{:.2f}", s["cache_hit_rate"].get<double>()) << " | "
           << (bpb ? fmt::format("{:.4f}", s["bpb_before"].get<double>()) : "") << " | "
           << (bpb ? fmt::format("{:.4f}", s["bpb_after"].get<double>()) : "") << " | "
           << (bpb ? fmt::format("{:+.1f}%", 100 * s["bpb_relative_change"].get<double>()) : "") << " | "
           << fmt::format("{:.2f} ({:.2f} / {:.2f} / {:.2f})", s["seconds_per_query"].get<double>(),
                          s["retrieve_seconds"].get<double>(), s["train_seconds"].get<double>(),
                          s["generate_seconds"].get<double>())
           << " |\n";
        accuracy[0].rows.push_back({name, {s["accuracy"].get<double>()}});
        seconds[0].rows.push_back(time_breakdown_row(name, s));
    }
    md << "\nCoQA: accuracy = em, alt. = f1. GSM8K: accuracy = strict-match, alt. = flexible-extract. MathQA/AQuA: "
          "accuracy = corrected letter extraction, alt. = the original's (first A-E anywhere). bpb: bits per byte of "
          "each item's question + solution under the base model and after TTT on its neighbours.\n\n"
          "![accuracy](accuracy.svg)\n![time](time.svg)\n";
    kb::write_file_atomic(folder / "report.md", md.str());
    ChartStyle accuracy_style;
    accuracy_style.title = "Accuracy per task";
    accuracy_style.max_value = 1.0;
    kb::write_file_atomic(folder / "accuracy.svg", bar_chart_svg(accuracy, accuracy_style));
    kb::write_file_atomic(folder / "time.svg", bar_chart_svg(seconds, time_breakdown_style()));
}

}  // namespace ct3::eval
