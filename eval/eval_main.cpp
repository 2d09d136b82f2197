// ct3-eval: scores the CT3 tasks with and without test-time training, per item, resumable.
//
//   ct3-eval --tasks gsm8k,mawps,mathqa,mbpp,humaneval --out results/base --limit 50
//   ct3-eval --tasks gsm8k --out results/ttt --ttt --server http://127.0.0.1:8000 --bpb
//
// Writes <out>/<task>.jsonl (one line per item: prompt, output, extracted, gold, correct, neighbours,
// losses, timings, cache, bpb), then <out>/summary.json and <out>/report.md over everything in the
// folder. A rerun skips the items already in the JSONL files. Logs go to stderr.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "client/client_flags.h"
#include "eval/bpb.h"
#include "eval/report.h"
#include "eval/tasks.h"
#include "kb/builder.h"
#include "kb/kb_files.h"
#include "models/causal_lm.h"
#include "models/error.h"
#include "models/log.h"
#include "models/program.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;
using namespace ct3::client;
using namespace ct3::eval;

namespace {

struct Options {
    ClientSetup setup;
    std::string tasks = "gsm8k,mawps,mathqa,mbpp,humaneval";
    std::string data_root;
    std::string out;
    int limit = 0;
    uint64_t seed = 42;
    std::string limit_sample = "original";
    std::string shard = "0/1";
    bool report_only = false;
    bool bpb = false;
    int max_new_tokens_cap = 0;  // 0 = the task's own budget
    bool ignore_eos = false;
    double code_timeout = 3.0;
    std::string log_level;
    ct3::GenerateParams generate;
};

std::vector<std::string> split_commas(const std::string & s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s + ",") {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else if (c != ' ') {
            cur += c;
        }
    }
    return out;
}

// The items already scored in `out` by any shard, per task; rows that recorded an error are run again.
std::map<std::string, std::set<std::string>> finished_ids(const fs::path & out) {
    std::map<std::string, std::set<std::string>> ids;
    for (const auto & [task, rows] : read_run_rows(out)) {
        for (const auto & row : rows) {
            if (!row.contains("error")) ids[task].insert(row.value("id", std::string()));
        }
    }
    return ids;
}

std::pair<int, int> parse_shard(const std::string & spec) {
    int k = -1, n = 0;
    char slash = 0, extra = 0;
    std::istringstream in(spec);
    const bool ok = static_cast<bool>(in >> k >> slash >> n) && slash == '/' && !(in >> extra) && n >= 1 && k >= 0 &&
                    k < n;
    CT3_CHECK(ok, ct3::ErrorKind::invalid_argument, "--shard must be K/N with 0 <= K < N (e.g. 0/4), got '{}'", spec);
    return {k, n};
}

// One line on a terminal, redrawn per item; log lines otherwise.
class EvalProgress {
public:
    explicit EvalProgress(bool tty) : tty_(tty) {}
    void item(const std::string & task, size_t done, size_t total, double correct, double scored, double ms,
              bool ttt) {
        seconds_ += ms / 1000;
        ++timed_;
        const double eta = timed_ > 0 ? seconds_ / timed_ * static_cast<double>(total - done) : 0;
        if (tty_) {
            std::fprintf(stderr, "\r%s %zu/%zu  accuracy %.3f  %.2f s/item  ETA %.0f s   ", task.c_str(), done, total,
                         scored > 0 ? correct / scored : 0.0, seconds_ / timed_, eta);
            if (done == total) std::fputc('\n', stderr);
            std::fflush(stderr);
            return;
        }
        ct3::logger("eval")->info("{} {}/{}: accuracy so far {:.3f} ({:.0f} ms{}, ETA {:.0f} s)", task, done, total,
                                  scored > 0 ? correct / scored : 0.0, ms, ttt ? ", TTT" : "", eta);
    }
    void start_task() { seconds_ = 0, timed_ = 0; }

private:
    bool tty_;
    double seconds_ = 0;
    double timed_ = 0;
};

// Provenance of the run folder, read back by ct3-eval-compare.
void write_run_file(const fs::path & out, const Options & o, int argc, char ** argv) {
    nlohmann::json args = nlohmann::json::array();
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    ct3::kb::write_file_atomic(out / "run.json", nlohmann::json({{"program", "ct3-eval"},
                                                                 {"args", args},
                                                                 {"model", o.setup.model_path},
                                                                 {"tasks", o.tasks},
                                                                 {"limit", o.limit},
                                                                 {"limit_sample", o.limit_sample},
                                                                 {"limit_seed", o.seed},
                                                                 {"started", ct3::kb::utc_now()}})
                                                         .dump(2) +
                                                     "\n");
}

nlohmann::json neighbours_json(const QueryResult & r) {
    nlohmann::json out = nlohmann::json::array();
    for (const Neighbour & n : r.neighbours) {
        out.push_back({{"id", n.id}, {"dataset", n.dataset}, {"row", n.row}, {"score", n.score}});
    }
    return out;
}

int run(Options & o, int argc, char ** argv) {
    auto log = ct3::logger("eval");
    finalize(o.setup);
    CT3_CHECK(!o.out.empty(), ct3::ErrorKind::invalid_argument, "--out is required (the report folder)");
    // The same default as ct3-build-kb: $CT3_DATA_DIR, $CT3_SHARED_DIR/data, ../shared/data.
    const fs::path data_root = o.data_root.empty() ? ct3::kb::default_data_root() : fs::path(o.data_root);
    std::vector<Task> tasks;
    for (const std::string & spec : split_commas(o.tasks)) tasks.push_back(load_task(spec, data_root));
    fs::create_directories(o.out);
    if (o.report_only) {
        const nlohmann::json summary = summarize_folder(o.out);
        write_report(o.out, summary);
        std::cout << summary.dump(2) << std::endl;
        return 0;
    }
    const auto [shard, shards] = parse_shard(o.shard);
    const LimitSample limit_sample = parse_limit_sample(o.limit_sample);
    if (shard == 0) write_run_file(o.out, o, argc, argv);

    LoadedModel loaded = load_model(o.setup);
    std::shared_ptr<NeighbourSource> retrieval = make_neighbour_source(o.setup);
    TTTEngine engine(loaded.model, loaded.tokenizer, retrieval, o.setup.engine);
    o.generate.stop_at_eos = !o.ignore_eos;
    SandboxLimits sandbox;
    sandbox.wall_seconds = o.code_timeout;
    sandbox.cpu_seconds = o.code_timeout;
    EvalProgress progress(ct3::stderr_is_tty());

    const auto finished = finished_ids(o.out);  // read once: every task's files
    for (Task & task : tasks) {
        const std::vector<size_t> order =
            select_items(task.spec, task.items.size(), o.limit, limit_sample, o.seed, shard, shards);
        // Shards write their own file; every reader merges a task's files.
        const std::string file_name =
            shards == 1 ? task.spec.name + ".jsonl" : fmt::format("{}.shard-{}-of-{}.jsonl", task.spec.name, shard, shards);
        const fs::path jsonl = fs::path(o.out) / file_name;
        const auto found = finished.find(task.spec.name);
        const std::set<std::string> done = found == finished.end() ? std::set<std::string>() : found->second;
        std::ofstream out(jsonl, std::ios::app);
        CT3_CHECK(out.good(), ct3::ErrorKind::io, "cannot append to {}", jsonl.string());
        size_t n_done = 0;
        double n_correct = 0, n_scored = 0;
        progress.start_task();
        for (size_t index : order) {
            const EvalItem & item = task.items[index];
            ++n_done;
            if (done.count(item.id) != 0) continue;
            ct3::EncodeOptions encode;
            encode.add_special_tokens = true;
            std::vector<int32_t> prompt_ids = loaded.tokenizer->encode(item.prompt, encode);
            ct3::GenerateParams params = o.generate;
            params.max_new_tokens = task.spec.max_tokens_total
                                        ? std::max(1, task.spec.max_new_tokens - static_cast<int>(prompt_ids.size()))
                                        : task.spec.max_new_tokens;
            // As lm-eval: the context is left-truncated so that prompt + new tokens fit the model
            // (the BOS stays first); a model shorter than the token budget gets half for each.
            const int context = static_cast<int>(loaded.model->max_position_embeddings());
            params.max_new_tokens = std::min(params.max_new_tokens, context / 2);
            if (o.max_new_tokens_cap > 0) params.max_new_tokens = std::min(params.max_new_tokens, o.max_new_tokens_cap);
            const size_t keep = static_cast<size_t>(std::max(2, context - params.max_new_tokens));
            if (prompt_ids.size() > keep) {
                const bool bos = loaded.tokenizer->bos_id() >= 0 && prompt_ids.front() == loaded.tokenizer->bos_id();
                std::vector<int32_t> cut(prompt_ids.end() - static_cast<long>(keep - (bos ? 1 : 0)), prompt_ids.end());
                if (bos) cut.insert(cut.begin(), prompt_ids.front());
                prompt_ids = std::move(cut);
            }
            for (const auto & stop : task.spec.stop_strings) params.stop_strings.push_back(stop);
            nlohmann::json row = {{"id", item.id}, {"task", task.spec.name}};
            try {
                if (o.bpb) {
                    engine.adapter().reset();  // B = 0: the base model
                    row["bpb_before"] = bits_per_byte(*loaded.model, *loaded.tokenizer, item.document).bits_per_byte();
                }
                QueryResult r = engine.answer(item.prompt, prompt_ids, params);
                if (o.bpb) {
                    row["bpb_after"] =
                        r.ttt_applied ? bits_per_byte(*loaded.model, *loaded.tokenizer, item.document).bits_per_byte()
                                      : row["bpb_before"].get<double>();
                }
                ItemScore score = score_output(task, item, r.generation.text, sandbox);
                row.update({{"prompt", item.prompt},
                            {"output", r.generation.text},
                            {"extracted", score.extracted},
                            {"extracted_alt", score.extracted_alt},
                            {"gold", item.gold},
                            {"correct", score.correct},
                            {"correct_alt", score.correct_alt},
                            {"ttt", r.ttt_applied},
                            {"fallback", r.fallback},
                            {"cache", r.cache},
                            {"neighbours", neighbours_json(r)},
                            {"losses", r.losses},
                            {"timings_ms",
                             {{"embed", r.timings.embed_ms},
                              {"retrieve", r.timings.retrieve_ms},
                              {"train", r.timings.train_ms},
                              {"generate", r.timings.generate_ms},
                              {"total", r.timings.total_ms}}}});
                if (task.spec.scoring == Scoring::coqa) {
                    row["em"] = score.em;
                    row["f1"] = score.f1;
                    row["golds"] = item.golds;
                }
                if (task.spec.scoring == Scoring::code) {
                    row["execution"] = {{"status", score.execution.status}, {"stderr", score.execution.stderr_text}};
                }
                n_scored += 1;
                n_correct += task.spec.scoring == Scoring::coqa ? score.em : (score.correct ? 1 : 0);
                progress.item(task.spec.name, n_done, order.size(), n_correct, n_scored, r.timings.total_ms,
                              r.ttt_applied);
            } catch (const ct3::Error & e) {
                // One bad item (a server error without --ttt_fallback, ...) is recorded as wrong, not fatal.
                log->error("{}: {}", item.id, e.what());
                row.update({{"prompt", item.prompt},
                            {"gold", item.gold},
                            {"correct", false},
                            {"correct_alt", false},
                            {"error", e.what()},
                            {"timings_ms", nlohmann::json::object()}});
            }
            out << row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
        }
    }
    const nlohmann::json summary = summarize_folder(o.out);
    write_report(o.out, summary);
    std::cout << summary.dump(2) << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char ** argv) {
    Options o;
    CLI::App app{"ct3-eval: score the CT3 tasks with or without test-time training"};
    add_model_flags(app, o.setup);
    add_server_flags(app, o.setup);
    add_ttt_flags(app, o.setup);
    add_sampling_flags(app, o.generate, o.ignore_eos);
    app.add_option("--tasks", o.tasks,
                   "Comma-separated: gsm8k mawps svamp mathqa aqua mbpp humaneval, or NAME=PATH[:letter]")
        ->capture_default_str();
    app.add_option("--data_root", o.data_root, "Datasets folder (default: as ct3-build-kb, ../shared/data)");
    app.add_option("--out", o.out, "Report folder (JSONL per task, summary.json, report.md); reruns resume")
        ->required();
    app.add_option("--limit", o.limit, "Items per task (a seeded sample); 0 = all")->capture_default_str();
    app.add_option("--limit_seed", o.seed, "Seed of the --limit sample")->capture_default_str();
    app.add_option("--limit_sample", o.limit_sample,
                   "Which --limit items: original (as each task's harness: LLM-Adapters tasks Python's "
                   "random.seed(--limit_seed) shuffle, lm-eval/bigcode tasks the first N) | shuffle | first")
        ->capture_default_str();
    app.add_option("--shard", o.shard,
                   "K/N: run every N-th selected item from the K-th (N processes sharing one device and --out)")
        ->capture_default_str();
    app.add_flag("--report_only", o.report_only, "Only rebuild summary.json and report.md from --out's results");
    app.add_flag("--bpb", o.bpb, "Also score each item's document in bits per byte, before and after TTT");
    app.add_option("--max_new_tokens_cap", o.max_new_tokens_cap,
                   "Cap on new tokens below the task's budget (quick --bpb runs; accuracy then means little)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--code_timeout", o.code_timeout, "Seconds per generated program (sandboxed)")
        ->capture_default_str();
    ct3::add_log_flags(app, o.log_level);
    CLI11_PARSE(app, argc, argv);
    return ct3::run_program("ct3-eval", [&] {
        ct3::log_init(o.log_level);
        return run(o, argc, argv);
    });
}
