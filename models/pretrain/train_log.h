// The training log of a pretraining run: one JSON line per logged step or evaluation
// (train_log.jsonl), the same rows as CSV (train_log.csv, for spreadsheets), and an SVG plot of the
// train and held-out loss curves (loss.svg). A resumed run first drops rows newer than its
// checkpoint, so the files always describe one consistent run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ct3::pretrain {

struct LogRow {
    std::string kind;  // "train" | "eval"
    int64_t step = 0;
    int64_t tokens = 0;        // tokens consumed so far (all processes)
    double elapsed_s = 0;      // training wall time so far (resumed runs continue the count)
    double loss = 0;           // train: mean over the steps since the last row; eval: held-out mean
    double bits_per_byte = 0;  // eval only
    double lr = 0, grad_norm = 0, tokens_per_s = 0, mfu = 0;  // train only
};

class TrainLog {
public:
    // Opens <dir>/train_log.{jsonl,csv}, keeping only rows with step <= keep_through_step (-1: none).
    TrainLog(const std::filesystem::path & dir, int64_t keep_through_step);
    void append(const LogRow & row);
    const std::vector<LogRow> & rows() const { return rows_; }
    // Rewrites <dir>/loss.svg from all rows (atomic).
    void write_plot() const;

private:
    void rewrite_files() const;
    std::filesystem::path dir_;
    std::vector<LogRow> rows_;
};

// An SVG line chart of train and eval loss against tokens (exposed for tests).
std::string loss_plot_svg(const std::vector<LogRow> & rows, const std::string & title);

}  // namespace ct3::pretrain
