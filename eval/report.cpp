#include "eval/report.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::eval {

namespace {

double mean_of(double sum, double n) {
    return n > 0 ? sum / n : 0.0;
}

// A horizontal bar chart: one bar per label, values in [0, max_value].
std::string bar_chart(const std::string & title, const std::vector<std::pair<std::string, double>> & bars,
                      double max_value, const std::string & unit) {
    const int row = 26, left = 150, width = 420, top = 40;
    const int height = top + row * static_cast<int>(bars.size()) + 20;
    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 110 << "\" height=\"" << height
        << "\" font-family=\"sans-serif\" font-size=\"13\">\n"
        << "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" << title << "</text>\n";
    for (size_t i = 0; i < bars.size(); ++i) {
        const double v = bars[i].second;
        const int y = top + row * static_cast<int>(i);
        const int w = max_value > 0 ? static_cast<int>(width * std::min(1.0, std::max(0.0, v / max_value))) : 0;
        svg << "<text x=\"" << left - 8 << "\" y=\"" << y + 16 << "\" text-anchor=\"end\">" << bars[i].first
            << "</text>\n<rect x=\"" << left << "\" y=\"" << y + 4 << "\" width=\"" << w
            << "\" height=\"16\" fill=\"#4878a8\"/>\n<text x=\"" << left + w + 6 << "\" y=\"" << y + 16 << "\">"
            << fmt::format("{:.3g}", v) << unit << "</text>\n";
    }
    svg << "</svg>\n";
    return svg.str();
}

}  // namespace

nlohmann::json summarize_folder(const fs::path & folder) {
    nlohmann::json tasks = nlohmann::json::object();
    std::vector<fs::path> files;
    for (const auto & entry : fs::directory_iterator(folder)) {
        if (entry.path().extension() == ".jsonl") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path & file : files) {
        double n = 0, correct = 0, correct_alt = 0, ttt = 0, hits = 0, bpb_n = 0, bpb_before = 0, bpb_after = 0;
        double t_total = 0, t_train = 0, t_generate = 0, t_retrieve = 0;
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
            if (row.contains("bpb_before") && row.contains("bpb_after")) {
                bpb_n += 1;
                bpb_before += row["bpb_before"].get<double>();
                bpb_after += row["bpb_after"].get<double>();
            }
            const auto & t = row["timings_ms"];
            t_total += t.value("total", 0.0);
            t_train += t.value("train", 0.0);
            t_generate += t.value("generate", 0.0);
            t_retrieve += t.value("retrieve", 0.0) + t.value("embed", 0.0);
        }
        nlohmann::json s = {{"items", n},
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
            s["bpb_before"] = before;
            s["bpb_after"] = after;
            s["bpb_relative_change"] = before > 0 ? (after - before) / before : 0.0;
        }
        tasks[file.stem().string()] = s;
    }
    return {{"folder", folder.string()}, {"tasks", tasks}};
}

void write_report(const fs::path & folder, const nlohmann::json & summary) {
    kb::write_file_atomic(folder / "summary.json", summary.dump(2) + "\n");
    std::ostringstream md;
    md << "# ct3-eval report: " << folder.filename().string() << "\n\n"
       << "| task | items | accuracy | alt. extraction | TTT rate | cache hits | bpb before | bpb after | Δ bpb | "
          "s/query "
          "(retrieve / train / generate) |\n|---|---|---|---|---|---|---|---|---|---|\n";
    std::vector<std::pair<std::string, double>> accuracy, seconds;
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
        accuracy.emplace_back(name, s["accuracy"].get<double>());
        seconds.emplace_back(name, s["seconds_per_query"].get<double>());
    }
    md << "\nCoQA: accuracy = em, alt. = f1. GSM8K: accuracy = strict-match, alt. = flexible-extract. MathQA/AQuA: accuracy = corrected letter "
          "extraction, alt. = the original's (first A-E anywhere). bpb: bits per byte of each item's question + "
          "solution under the base model and after TTT on its "
          "neighbours.\n\n![accuracy](accuracy.svg)\n![time](time.svg)\n";
    kb::write_file_atomic(folder / "report.md", md.str());
    double max_seconds = 0;
    for (const auto & [name, v] : seconds) max_seconds = std::max(max_seconds, v);
    kb::write_file_atomic(folder / "accuracy.svg", bar_chart("Accuracy per task", accuracy, 1.0, ""));
    kb::write_file_atomic(folder / "time.svg", bar_chart("Seconds per query", seconds, max_seconds, " s"));
}

}  // namespace ct3::eval
