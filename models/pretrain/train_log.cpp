#include "models/pretrain/train_log.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::pretrain {

namespace {

nlohmann::json row_json(const LogRow & r) {
    nlohmann::json j = {{"kind", r.kind}, {"step", r.step}, {"tokens", r.tokens}, {"elapsed_s", r.elapsed_s},
                        {"loss", r.loss}};
    if (r.kind == "eval") {
        j["bits_per_byte"] = r.bits_per_byte;
    } else {
        j["lr"] = r.lr;
        j["grad_norm"] = r.grad_norm;
        j["tokens_per_s"] = r.tokens_per_s;
        j["mfu"] = r.mfu;
    }
    return j;
}

LogRow row_from_json(const nlohmann::json & j) {
    LogRow r;
    r.kind = j.at("kind").get<std::string>();
    r.step = j.at("step").get<int64_t>();
    r.tokens = j.at("tokens").get<int64_t>();
    r.elapsed_s = j.at("elapsed_s").get<double>();
    r.loss = j.at("loss").get<double>();
    r.bits_per_byte = j.value("bits_per_byte", 0.0);
    r.lr = j.value("lr", 0.0);
    r.grad_norm = j.value("grad_norm", 0.0);
    r.tokens_per_s = j.value("tokens_per_s", 0.0);
    r.mfu = j.value("mfu", 0.0);
    return r;
}

std::string csv_line(const LogRow & r) {
    return fmt::format("{},{},{},{:.3f},{:.6f},{:.6f},{:.6g},{:.4f},{:.1f},{:.4f}\n", r.kind, r.step, r.tokens,
                       r.elapsed_s, r.loss, r.bits_per_byte, r.lr, r.grad_norm, r.tokens_per_s, r.mfu);
}

const char * kCsvHeader = "kind,step,tokens,elapsed_s,loss,bits_per_byte,lr,grad_norm,tokens_per_s,mfu\n";

}  // namespace

TrainLog::TrainLog(const fs::path & dir, int64_t keep_through_step) : dir_(dir) {
    std::ifstream in(dir / "train_log.jsonl");
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) continue;
        try {
            LogRow r = row_from_json(nlohmann::json::parse(line));
            if (r.step <= keep_through_step) rows_.push_back(r);
        } catch (const std::exception &) {
            break;  // a torn last line from a kill: everything after it is newer than the checkpoint anyway
        }
    }
    rewrite_files();
}

void TrainLog::rewrite_files() const {
    std::string jsonl, csv = kCsvHeader;
    for (const LogRow & r : rows_) {
        jsonl += row_json(r).dump() + "\n";
        csv += csv_line(r);
    }
    kb::write_file_atomic(dir_ / "train_log.jsonl", jsonl);
    kb::write_file_atomic(dir_ / "train_log.csv", csv);
}

void TrainLog::append(const LogRow & row) {
    rows_.push_back(row);
    // Appends (not rewrites): a run logs thousands of rows; a torn tail is dropped on resume.
    std::ofstream jsonl(dir_ / "train_log.jsonl", std::ios::app);
    std::ofstream csv(dir_ / "train_log.csv", std::ios::app);
    jsonl << row_json(row).dump() << "\n";
    csv << csv_line(row);
    CT3_CHECK(jsonl.good() && csv.good(), ErrorKind::io, "cannot append to {}", (dir_ / "train_log.jsonl").string());
}

void TrainLog::write_plot() const {
    kb::write_file_atomic(dir_ / "loss.svg", loss_plot_svg(rows_, dir_.filename().string()));
}

std::string loss_plot_svg(const std::vector<LogRow> & rows, const std::string & title) {
    const double W = 720, H = 420, left = 70, right = 20, top = 40, bottom = 50;
    double max_tokens = 1, lo = 1e30, hi = -1e30;
    for (const LogRow & r : rows) {
        if (!std::isfinite(r.loss)) continue;
        max_tokens = std::max(max_tokens, static_cast<double>(r.tokens));
        lo = std::min(lo, r.loss);
        hi = std::max(hi, r.loss);
    }
    if (lo > hi) lo = 0, hi = 1;
    if (hi - lo < 1e-6) hi = lo + 1;
    const double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    auto x_of = [&](double t) { return left + (W - left - right) * t / max_tokens; };
    auto y_of = [&](double l) { return top + (H - top - bottom) * (hi - l) / (hi - lo); };

    std::ostringstream s;
    s << fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
                     "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
                     W, H);
    s << fmt::format("<text x=\"{}\" y=\"22\" font-size=\"15\">loss: {}</text>\n", left, title);
    for (int i = 0; i <= 5; ++i) {  // y grid with loss labels
        const double l = lo + (hi - lo) * i / 5.0, y = y_of(l);
        s << fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, W - right,
                         y);
        s << fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2f}</text>\n", left - 6, y + 4, l);
    }
    for (int i = 0; i <= 4; ++i) {  // x labels in millions of tokens
        const double t = max_tokens * i / 4.0;
        s << fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.1f}M</text>\n", x_of(t), H - bottom + 18,
                         t / 1e6);
    }
    s << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">tokens</text>\n", (left + W - right) / 2, H - 10);
    s << fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">loss "
                     "(nats/token)</text>\n",
                     (top + H - bottom) / 2, (top + H - bottom) / 2);
    auto series = [&](const char * kind, const char * colour, const char * label, double legend_y) {
        std::string points;
        for (const LogRow & r : rows) {
            if (r.kind != kind || !std::isfinite(r.loss)) continue;
            points += fmt::format("{:.1f},{:.1f} ", x_of(static_cast<double>(r.tokens)), y_of(r.loss));
        }
        if (points.empty()) return;
        s << fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", colour, points);
        s << fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"/>"
                         "<text x=\"{}\" y=\"{}\">{}</text>\n",
                         W - right - 150, legend_y, W - right - 125, legend_y, colour, W - right - 118, legend_y + 4,
                         label);
    };
    series("train", "#1f77b4", "train", top + 10);
    series("eval", "#d62728", "held-out", top + 28);
    s << "</svg>\n";
    return s.str();
}

}  // namespace ct3::pretrain
