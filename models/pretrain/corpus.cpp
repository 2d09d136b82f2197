#include "models/pretrain/corpus.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "kb/builder.h"
#include "kb/kb_files.h"
#include "kb/test_overlap.h"
#include "models/error.h"
#include "models/log.h"
#include "models/pretrain/corpus_sources.h"
#include "models/sha256.h"

namespace ct3::pretrain {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using kb::Overlap;
using kb::TestSetIndex;
using kb::TestSetInfo;

// A JSONL output written under a temp name and renamed into place by commit(), hashed as it goes.
// Destroyed without commit() (an error), it removes the temp file and leaves the old output alone.
class JsonlOutput {
public:
    explicit JsonlOutput(fs::path path) : path_(std::move(path)) {
        temp_ = path_;
        temp_ += ".tmp." + std::to_string(::getpid());
        file_ = std::fopen(temp_.c_str(), "wb");
        CT3_CHECK(file_ != nullptr, ErrorKind::io, "cannot create '{}'", temp_.string());
    }
    ~JsonlOutput() {
        if (!file_) return;
        std::fclose(file_);
        std::error_code ec;
        fs::remove(temp_, ec);
    }
    JsonlOutput(const JsonlOutput &) = delete;
    JsonlOutput & operator=(const JsonlOutput &) = delete;

    void write(const std::string & line) {
        CT3_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size(), ErrorKind::io,
                  "cannot write '{}' (disk full?)", temp_.string());
        sha_.update(line);
    }

    // Flushes, fsyncs and renames the file into place; returns its sha256.
    std::string commit() {
        const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
        std::fclose(file_);
        file_ = nullptr;
        CT3_CHECK(ok, ErrorKind::io, "cannot flush '{}' (disk full?)", temp_.string());
        std::error_code ec;
        fs::rename(temp_, path_, ec);
        CT3_CHECK(!ec, ErrorKind::io, "cannot rename '{}' to '{}': {}", temp_.string(), path_.string(), ec.message());
        kb::fsync_parent(path_);
        return sha_.hex_digest();
    }

private:
    fs::path path_, temp_;
    std::FILE * file_ = nullptr;
    Sha256 sha_;
};

void validate(const CorpusOptions & o) {
    CT3_CHECK(o.held_out_fraction >= 0.0 && o.held_out_fraction < 1.0, ErrorKind::invalid_argument,
              "corpus: held_out_fraction must be in [0, 1) (got {})", o.held_out_fraction);
    CT3_CHECK(o.max_file_bytes > 0, ErrorKind::invalid_argument, "corpus: max_file_bytes must be > 0");
    CT3_CHECK(o.log_overlaps >= 0, ErrorKind::invalid_argument, "corpus: log_overlaps must be >= 0 (got {})",
              o.log_overlaps);
    CT3_CHECK(!o.datasets.empty() || !o.text_roots.empty() || !o.extra_datasets.empty(), ErrorKind::invalid_argument,
              "corpus: no sources (give datasets, text roots or extra datasets)");
}

json stats_json(const SourceStats & s) {
    json j = {{"documents", s.documents},
              {"bytes", s.bytes},
              {"held_out_documents", s.held_out_documents},
              {"held_out_bytes", s.held_out_bytes},
              {"dropped_overlap", s.dropped_overlap},
              {"dropped_duplicate", s.dropped_duplicate},
              {"dropped_empty", s.dropped_empty}};
    if (!s.overlap_by_test_set.empty()) j["dropped_overlap_by_test_set"] = s.overlap_by_test_set;
    if (s.name != "total") {
        j["licence"] = s.licence;
        j["origin"] = s.origin;
    }
    if (s.skipped_non_utf8 || s.skipped_too_large || s.name == "total") {
        j["skipped_non_utf8"] = s.skipped_non_utf8;
        j["skipped_too_large"] = s.skipped_too_large;
    }
    return j;
}

json options_json(const CorpusOptions & o, const fs::path & data_root) {
    json roots = json::array();
    for (const TextRoot & r : o.text_roots) {
        roots.push_back({{"dir", r.dir.string()},
                         {"extensions", r.extensions},
                         {"source", r.source},
                         {"licence", r.licence},
                         {"skip_dirs", r.skip_dirs}});
    }
    return {{"data_root", data_root.string()},
            {"datasets", o.datasets},
            {"text_roots", roots},
            {"extra_datasets", o.extra_datasets},
            {"extra_template", o.extra_template},
            {"held_out_fraction", o.held_out_fraction},
            {"seed", o.seed},
            {"ngram", o.ngram},
            {"max_file_bytes", o.max_file_bytes}};
}

void add_to(SourceStats & total, const SourceStats & s) {
    total.documents += s.documents;
    total.bytes += s.bytes;
    total.held_out_documents += s.held_out_documents;
    total.held_out_bytes += s.held_out_bytes;
    total.dropped_overlap += s.dropped_overlap;
    for (const auto & [set, count] : s.overlap_by_test_set) total.overlap_by_test_set[set] += count;
    total.dropped_duplicate += s.dropped_duplicate;
    total.dropped_empty += s.dropped_empty;
    total.skipped_non_utf8 += s.skipped_non_utf8;
    total.skipped_too_large += s.skipped_too_large;
}

}  // namespace

bool is_held_out(const std::string & text, uint64_t seed, double fraction) {
    const double u = double(kb::hash_bytes(text, seed) >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    return u < fraction;
}

TextRoot python_stdlib_root(const fs::path & dir) {
    return {dir, {".py"}, "python-stdlib", "PSF-2.0",
            {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}};
}

TextRoot python_docs_root(const fs::path & sources_dir) { return {sources_dir, {".txt"}, "python-docs", "PSF-2.0", {}}; }

CorpusStats build_corpus(const CorpusOptions & options, const fs::path & out_dir) {
    auto log = logger("pretrain");
    const auto start = std::chrono::steady_clock::now();
    validate(options);
    const fs::path data_root = options.data_root.empty() ? kb::default_data_root() : options.data_root;

    // Every source is resolved (and evaluation files refused) before the index is built or any
    // output is touched.
    const std::vector<CorpusSource> sources = resolve_corpus_sources(options, data_root);
    TestSetIndex index(options.ngram);
    CorpusStats stats;
    stats.test_sets = index.load_data_root(data_root);
    stats.test_documents = index.documents();
    if (stats.test_sets == 0) {
        fail_hint(ErrorKind::not_found, "pass the data root that holds gsm8k/test.jsonl, mbpp/mbpp_test.jsonl, ...",
                  "corpus: no evaluation set found under '{}', so the corpus cannot be checked for test-set overlap",
                  data_root.string());
    }

    std::error_code ec;
    fs::create_directories(out_dir, ec);
    CT3_CHECK(!ec, ErrorKind::io, "cannot create the corpus folder '{}': {}", out_dir.string(), ec.message());
    stats.train_path = out_dir / "train.jsonl";
    stats.held_out_path = out_dir / "held_out.jsonl";
    stats.manifest_path = out_dir / "corpus.json";
    JsonlOutput train(stats.train_path), held_out(stats.held_out_path);

    std::unordered_set<uint64_t> seen;  // normalised-document hashes written so far
    for (const CorpusSource & source : sources) {
        SourceStats s;
        s.name = source.name;
        s.licence = source.licence;
        s.origin = source.origin;
        source.read(
            [&](Document && doc) {
                const Overlap overlap = index.check(doc.text);
                if (overlap.words == 0) {
                    ++s.dropped_empty;
                    return;
                }
                if (overlap.found()) {
                    ++s.overlap_by_test_set[overlap.test_set];
                    if (s.dropped_overlap++ < options.log_overlaps) {
                        log->info("{}: dropped, {} overlap with {} record {}: \"{}\"", doc.where,
                                  overlap.exact ? "exact" : fmt::format("{}-gram", index.ngram()), overlap.test_set,
                                  overlap.test_row, overlap.match);
                    }
                    return;
                }
                if (!seen.insert(overlap.key).second) {
                    ++s.dropped_duplicate;
                    return;
                }
                std::string line;
                try {
                    line = json{{"source", s.name}, {"text", doc.text}}.dump() + "\n";
                } catch (const json::exception & e) {
                    fail(ErrorKind::bad_format, "{}: the text cannot be written as JSON: {}", doc.where, e.what());
                }
                const int64_t bytes = int64_t(doc.text.size());
                if (is_held_out(doc.text, options.seed, options.held_out_fraction)) {
                    held_out.write(line);
                    ++s.held_out_documents;
                    s.held_out_bytes += bytes;
                } else {
                    train.write(line);
                }
                ++s.documents;
                s.bytes += bytes;
            },
            s);
        log->info("source '{}': {} documents ({:.2f} MB, {} held out); dropped {} overlapping, {} duplicate, {} empty{}",
                  s.name, s.documents, s.bytes / 1e6, s.held_out_documents, s.dropped_overlap, s.dropped_duplicate,
                  s.dropped_empty,
                  s.skipped_non_utf8 || s.skipped_too_large
                      ? fmt::format("; skipped {} non-UTF-8 and {} too large files", s.skipped_non_utf8, s.skipped_too_large)
                      : std::string());
        stats.sources.push_back(std::move(s));
    }

    stats.total.name = "total";
    for (const SourceStats & s : stats.sources) add_to(stats.total, s);
    stats.train_sha256 = train.commit();
    stats.held_out_sha256 = held_out.commit();

    json manifest;
    json per_source = json::object();
    for (const SourceStats & s : stats.sources) per_source[s.name] = stats_json(s);
    json test_sets = json::array();
    for (const TestSetInfo & t : index.sets()) test_sets.push_back({{"name", t.name}, {"records", t.documents}});
    manifest["sources"] = per_source;
    manifest["source_order"] = json::array();
    for (const SourceStats & s : stats.sources) manifest["source_order"].push_back(s.name);
    manifest["total"] = stats_json(stats.total);
    manifest["options"] = options_json(options, data_root);
    manifest["test_sets"] = test_sets;
    manifest["files"] = {{"train.jsonl", {{"documents", stats.total.documents - stats.total.held_out_documents},
                                          {"sha256", stats.train_sha256}}},
                         {"held_out.jsonl", {{"documents", stats.total.held_out_documents},
                                             {"sha256", stats.held_out_sha256}}}};
    kb::write_file_atomic(stats.manifest_path, manifest.dump(2) + "\n");

    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log->info("corpus: {} documents ({:.2f} MB; {} held out) in '{}'; dropped {} overlapping, {} duplicate; {:.1f} s",
              stats.total.documents, stats.total.bytes / 1e6, stats.total.held_out_documents, out_dir.string(),
              stats.total.dropped_overlap, stats.total.dropped_duplicate, stats.seconds);
    return stats;
}

}  // namespace ct3::pretrain
