// ct3-build-kb: build a knowledge base folder (texts, embeddings, FAISS index; see
// kb/knowledge_base.h) from datasets.
//
//   ct3-build-kb --datasets gsm8k mbpp --save_dir kb
//   ct3-build-kb --datasets all --index "IVF256,Flat" --on_disk --save_dir kb --overwrite
//   ct3-build-kb --datasets mydata.jsonl --template "{question} {answer}" --embedder path/to/all-MiniLM-L6-v2
//
// Texts overlapping the data root's evaluation sets are dropped (--keep_test_overlap keeps them).
// A killed build resumes when run again with the same arguments (--restart discards it). Progress
// goes to stderr (a bar on a terminal, else a log line every ~5 s); the manifest summary JSON goes
// to stdout at the end. Test hook: CT3_BUILD_KB_KILL_AFTER_SHARDS=N makes the process SIGKILL
// itself after N shards (tests/programs/build_kb_resume.sh).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kb/builder.h"
#include "models/error.h"
#include "models/log.h"
#include "models/program.h"

namespace {

std::string format_duration(double seconds) {
    const long s = seconds > 0 && seconds < 1e9 ? long(seconds + 0.5) : 0;
    char buffer[32];
    if (s >= 3600) std::snprintf(buffer, sizeof buffer, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
    return buffer;
}

// Embedding progress: a bar redrawn in place on a terminal, else an info line every ~5 s.
class ProgressReporter {
public:
    explicit ProgressReporter(bool tty) : tty_(tty), last_log_(std::chrono::steady_clock::now()) {}

    void operator()(const ct3::kb::BuildProgress & p) {
        const int64_t fresh = p.done - p.resumed;
        const double rate = p.seconds > 0 ? double(fresh) / p.seconds : 0;
        const double eta = rate > 0 ? double(p.total - p.done) / rate : 0;
        const double fraction = p.total > 0 ? double(p.done) / double(p.total) : 1;
        if (tty_) {
            constexpr int kWidth = 30;
            const int filled = int(fraction * kWidth);
            std::string bar(size_t(filled), '=');
            if (filled < kWidth) bar += '>' + std::string(size_t(kWidth - filled - 1), ' ');
            std::fprintf(stderr, "\r[%s] %lld/%lld texts %3.0f%%  %.0f texts/s  ETA %s   ", bar.c_str(),
                         (long long)p.done, (long long)p.total, 100 * fraction, rate, format_duration(eta).c_str());
            if (p.done == p.total) std::fputc('\n', stderr);
            std::fflush(stderr);
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (p.done < p.total && now - last_log_ < std::chrono::seconds(5)) return;
        last_log_ = now;
        ct3::logger("kb")->info("embedded {}/{} texts ({:.0f}%), {:.0f} texts/s, ETA {}", p.done, p.total,
                                100 * fraction, rate, format_duration(eta));
    }

private:
    bool tty_;
    std::chrono::steady_clock::time_point last_log_;
};

nlohmann::json summary(const ct3::kb::BuildOptions & o, const ct3::kb::BuildReport & report) {
    const auto & m = report.manifest;
    nlohmann::json datasets = nlohmann::json::array();
    for (const auto & d : m["datasets"])
        datasets.push_back({{"name", d["name"]},
                            {"rows", d["rows"]},
                            {"entries", d["entries"]},
                            {"duplicates", d["duplicates"]},
                            {"test_overlap", d["test_overlap"]},
                            {"empty", d["empty"]}});
    return {{"save_dir", o.save_dir.string()},
            {"count", m["count"]},
            {"dim", m["dim"]},
            {"duplicates", m["duplicates"]},
            {"empty", m["empty"]},
            {"decontaminated", m["decontaminated"]},
            {"test_overlap", m["test_overlap"]},
            {"datasets", datasets},
            {"index", m["index"]},
            {"embedder", m["embedder"]},
            {"seconds", report.seconds},
            {"texts_per_second", m["build"]["texts_per_second"]},
            {"resumed_texts", report.resumed_texts}};
}

}  // namespace

int main(int argc, char ** argv) {
    ct3::kb::BuildOptions o;
    std::string data_root, save_dir = o.save_dir.string(), log_level;
    bool debug = false;
    CLI::App app{"ct3-build-kb: build a knowledge base (texts, embeddings, FAISS index) from datasets"};
    app.add_option("--datasets", o.datasets,
                   "all | gsm8k mawps math_data mbpp python_code | NAME=PATH (coqa, metamathqa, orca_math, math_50k, "
                   "the_stack_python, or a known name on another file) | a .json/.jsonl file (with --template)")
        ->required()
        ->expected(1, -1);
    app.add_option("--data_root,--data-root", data_root, "Folder of the known datasets (default: $CT3_DATA_DIR or ../shared/data)");
    app.add_option("--template", o.text_template, "Text of a record of a plain file dataset, e.g. \"{question} {answer}\"");
    app.add_option("--embedder", o.embedder, "hashed[:dim=..,...] (fitted on the KB texts) or a sentence-transformers folder")
        ->capture_default_str();
    app.add_option("--device", o.device, "cpu, cuda, cuda:N (sentence-transformers embedders)")->capture_default_str();
    app.add_option("--batch_size,--batch-size", o.embed_batch_size, "Texts per forward pass of a neural embedder")
        ->capture_default_str();
    app.add_option("--index", o.index_factory, "FAISS factory string: Flat, IVF256,Flat, IVF64,PQ8, HNSW32, OPQ8,IVF64,PQ8, ...")
        ->capture_default_str();
    app.add_flag("--on_disk,--on-disk", o.on_disk_lists, "IVF indexes: keep the inverted lists in index.ivfdata (mmapped when served)");
    app.add_option("--train_size,--train-size", o.train_size, "Vectors to train IVF/PQ on (0: FAISS's advice, capped at the KB size)")
        ->capture_default_str();
    auto * limit = app.add_option("--limit", o.limit_per_dataset, "Take only the first N records of each dataset (0 = all)")
                       ->capture_default_str();
    bool keep_test_overlap = false;
    app.add_flag("--keep_test_overlap,--keep-test-overlap", keep_test_overlap,
                 "Keep texts that overlap the evaluation sets of the data root (exact or 13-gram; dropped by default, "
                 "since a KB holding test items hands TTT retrieval the answers). Only for a KB used on something "
                 "other than our evaluation");
    app.add_flag("--debug", debug, "Same as --limit 100 (the original's --debug)")->excludes(limit);
    app.add_option("--shard_size,--shard-size", o.shard_size, "Texts per resumable shard (fsynced and recorded)")
        ->capture_default_str();
    app.add_option("--save_dir,--save-dir", save_dir, "Output folder (written as <save_dir>.partial, then renamed)")
        ->required();
    app.add_flag("--overwrite", o.overwrite, "Replace an existing knowledge base in --save_dir");
    app.add_flag("--restart", o.restart, "Discard a partial build of --save_dir instead of resuming it");
    ct3::add_log_flags(app, log_level);
    CLI11_PARSE(app, argc, argv);

    return ct3::run_program("ct3-build-kb", [&] {
        ct3::log_init(log_level);
        if (debug) o.limit_per_dataset = 100;
        o.decontaminate = !keep_test_overlap;
        o.data_root = data_root;
        o.save_dir = save_dir;
        o.args.assign(argv, argv + argc);
        ProgressReporter progress(ct3::stderr_is_tty());
        const ct3::kb::BuildReport report =
            ct3::kb::build_kb(o, [&](const ct3::kb::BuildProgress & p) { progress(p); });
        const auto & m = report.manifest;
        ct3::logger("kb")->info("built '{}': {} texts, dim {}, {} test-set overlaps and {} duplicates dropped, "
                                "{:.1f} s, {:.0f} texts/s embedded",
                                o.save_dir.string(), m["count"].get<int64_t>(), m["dim"].get<int64_t>(),
                                m["test_overlap"].get<int64_t>(), m["duplicates"].get<int64_t>(), report.seconds,
                                m["build"]["texts_per_second"].get<double>());
        std::cout << summary(o, report).dump(2) << std::endl;
        return 0;
    });
}
