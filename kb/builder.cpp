// build_kb: datasets -> decontaminated, deduplicated texts -> embeddings (in resumable shards) ->
// FAISS index -> KB folder (format in knowledge_base.h), written in `<save_dir>.partial/` and renamed
// into place.
#include "kb/builder.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>

#include <fmt/ranges.h>

#include "kb/build_inputs.h"
#include "kb/build_state.h"
#include "kb/kb_files.h"
#include "kb/kb_index.h"
#include "kb/kb_texts.h"
#include "kb/knowledge_base.h"
#include "models/embedder.h"
#include "models/error.h"
#include "models/hashed_embedder.h"
#include "models/log.h"
#include "models/sha256.h"

#ifndef CT3_VERSION_STRING
#define CT3_VERSION_STRING "unknown"
#endif

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3::kb {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char * kEmbeddingsFile = "embeddings.f32";
constexpr const char * kHashedStateFile = "embedder/hashed.bin";
// Test hook (tests/programs/build_kb_resume.sh): after this many shards of this run are durably
// recorded, the process kills itself with SIGKILL, exactly as an external `kill -9` would.
constexpr const char * kKillEnv = "CT3_BUILD_KB_KILL_AFTER_SHARDS";

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

bool is_hashed_spec(const std::string & spec) { return spec == "hashed" || spec.rfind("hashed:", 0) == 0; }

int64_t kill_after_shards() {
    const char * env = std::getenv(kKillEnv);
    if (env == nullptr || *env == '\0') return 0;
    char * end = nullptr;
    const long long value = std::strtoll(env, &end, 10);
    CT3_CHECK(*end == '\0' && value >= 1, ErrorKind::invalid_argument, "{}='{}' is not a positive integer", kKillEnv,
              env);
    return value;
}

void validate(const BuildOptions & o) {
    CT3_CHECK(o.shard_size >= 1 && o.shard_size <= (int64_t(1) << 24), ErrorKind::invalid_argument,
              "--shard_size must be between 1 and 16777216 (got {})", o.shard_size);
    CT3_CHECK(o.embed_batch_size >= 1 && o.embed_batch_size <= 65536, ErrorKind::invalid_argument,
              "--batch_size must be between 1 and 65536 (got {})", o.embed_batch_size);
    CT3_CHECK(o.limit_per_dataset >= 0, ErrorKind::invalid_argument, "--limit must be >= 0 (got {})",
              o.limit_per_dataset);
    CT3_CHECK(o.train_size >= 0, ErrorKind::invalid_argument, "--train_size must be >= 0 (got {})", o.train_size);
}

// save_dir without a trailing slash ("kb/" -> "kb"), so that "<save_dir>.partial" is a sibling.
fs::path normalise_save_dir(const fs::path & save_dir) {
    fs::path p = save_dir.lexically_normal();
    if (!p.has_filename()) p = p.parent_path();
    CT3_CHECK(!p.empty() && p.filename() != "." && p.filename() != "..", ErrorKind::invalid_argument,
              "--save_dir '{}' must name a folder to create", save_dir.string());
    return p;
}

// An existing save_dir is replaced only with --overwrite, and only when it is a KB (or empty):
// --overwrite must never delete an unrelated folder given by mistake.
void check_save_dir(const fs::path & save_dir, bool overwrite) {
    std::error_code ec;
    if (!fs::exists(save_dir, ec)) return;
    if (!overwrite)
        fail_hint(ErrorKind::invalid_argument, "pass --overwrite to replace it", "--save_dir '{}' already exists",
                  save_dir.string());
    bool is_kb = fs::is_directory(save_dir, ec) && fs::is_empty(save_dir, ec);
    if (!is_kb && fs::is_regular_file(save_dir / "manifest.json", ec)) {
        try {
            is_kb = json::parse(read_whole_file(save_dir / "manifest.json", "manifest")).value("format", "") ==
                    std::string(kFormatName);
        } catch (const std::exception &) {
            is_kb = false;
        }
    }
    CT3_CHECK(is_kb, ErrorKind::invalid_argument,
              "--save_dir '{}' exists and is not a knowledge base; refusing to replace it even with --overwrite",
              save_dir.string());
}

// Renames the finished partial folder to save_dir (moving an old KB aside first) durably.
void install(const fs::path & partial, const fs::path & save_dir, bool overwrite) {
    fsync_path(partial);
    std::error_code ec;
    fs::path old;
    if (fs::exists(save_dir, ec)) {
        check_save_dir(save_dir, overwrite);
        old = save_dir;
        old += ".old";
        fs::remove_all(old, ec);
        fs::rename(save_dir, old, ec);
        CT3_CHECK(!ec, ErrorKind::io, "cannot move the old '{}' aside: {}", save_dir.string(), ec.message());
    }
    fs::rename(partial, save_dir, ec);
    CT3_CHECK(!ec, ErrorKind::io, "cannot rename '{}' to '{}': {}", partial.string(), save_dir.string(), ec.message());
    fsync_parent(save_dir);
    if (!old.empty()) fs::remove_all(old, ec);
}

json file_entry(const fs::path & path) {
    return {{"bytes", int64_t(fs::file_size(path))}, {"sha256", sha256_file(path)}};
}

}  // namespace

std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buffer;
}

fs::path default_data_root() {
    if (const char * env = std::getenv("CT3_DATA_DIR"); env != nullptr && *env != '\0') return env;
    if (const char * env = std::getenv("CT3_SHARED_DIR"); env != nullptr && *env != '\0') return fs::path(env) / "data";
    std::error_code ec;
    const fs::path relative = fs::absolute("../shared/data", ec).lexically_normal();
    if (!ec && fs::is_directory(relative, ec)) return relative;
#ifdef CT3_KB_SOURCE_SHARED_DATA
    if (fs::is_directory(CT3_KB_SOURCE_SHARED_DATA, ec)) return fs::path(CT3_KB_SOURCE_SHARED_DATA).lexically_normal();
#endif
    return relative;
}

BuildReport build_kb(const BuildOptions & options, const std::function<void(const BuildProgress &)> & on_progress) {
    auto log = logger("kb");
    const auto start = Clock::now();
    validate(options);
    const fs::path save_dir = normalise_save_dir(options.save_dir);
    fs::path partial_dir = save_dir;
    partial_dir += ".partial";
    check_save_dir(save_dir, options.overwrite);
    const int64_t kill_after = kill_after_shards();
    const fs::path data_root = options.data_root.empty() ? default_data_root() : options.data_root;

    // 1. Texts.
    BuildInputs inputs = read_build_inputs(options.datasets, data_root, options.text_template,
                                           options.limit_per_dataset, options.decontaminate);
    const int64_t n = inputs.size();
    log->info("{} texts from {} datasets ({} overlapping evaluation sets, {} duplicates and {} empty texts dropped)", n,
              inputs.sources.size(), inputs.test_overlap, inputs.duplicates, inputs.empty);
    if (!options.decontaminate)
        log->warn("--keep_test_overlap: texts overlapping the evaluation sets are kept; scores measured with this KB "
                  "(TTT retrieval) can be contaminated");

    // 2. Embedder (the hashed one is fitted on exactly these texts: deterministic, so a resumed
    // build refits to the same state).
    const bool hashed = is_hashed_spec(options.embedder);
    EmbedderOptions embedder_options;
    embedder_options.device = options.device;
    embedder_options.batch_size = options.embed_batch_size;
    std::unique_ptr<Embedder> embedder = load_embedder(options.embedder, embedder_options);
    if (hashed) {
        auto * h = dynamic_cast<HashedEmbedder *>(embedder.get());
        CT3_ASSERT(h != nullptr);
        if (!h->fitted()) {
            log->info("fitting the hashed embedder's IDF on {} texts", n);
            h->fit(inputs.texts);
        }
        if (options.device != "cpu") log->info("--device {} ignored: the hashed embedder runs on the CPU", options.device);
    }
    const json identity = embedder->identity();
    const int64_t dim = embedder->dim();
    IndexBuildOptions index_options;
    index_options.factory = options.index_factory;
    index_options.on_disk_lists = options.on_disk_lists;
    index_options.train_size = options.train_size;
    check_index_options(index_options, dim, n);  // a bad --index fails now, not after the embedding

    // 3. The partial folder, resumed when the result-changing arguments are the same.
    json dataset_args = json::array();
    for (const auto & s : inputs.sources)
        dataset_args.push_back({{"token", s.token},
                                {"path", fs::absolute(s.spec.path).lexically_normal().string()},
                                {"sha256", s.sha256}});
    const json arguments = {
        {"format_version", kFormatVersion},
        {"datasets", dataset_args},
        {"template", options.text_template},
        {"embedder", hashed ? options.embedder : fs::absolute(options.embedder).lexically_normal().string()},
        {"embedder_identity", identity},
        {"limit", options.limit_per_dataset},
        // The evaluation sets checked (names and record counts) change which texts are kept, too.
        {"decontamination", decontamination_json(inputs)},
        {"shard_size", options.shard_size},
        {"index", options.index_factory},
        {"on_disk", options.on_disk_lists},
        {"train_size", options.train_size},
        {"count", n},
        {"dim", dim}};
    PartialBuild partial(partial_dir, arguments, options.restart);
    const fs::path & work = partial.dir();
    const int64_t n_shards = (n + options.shard_size - 1) / options.shard_size;
    int64_t shard = partial.shards_done();
    const int64_t resumed = partial.rows_done();
    if (shard > n_shards || resumed != std::min(n, shard * options.shard_size))
        fail_hint(ErrorKind::bad_format, "pass --restart to start over",
                  "'{}' records {} shards / {} texts done, inconsistent with {} texts in shards of {}",
                  (work / kProgressFile).string(), shard, resumed, n, options.shard_size);
    if (hashed) {
        fs::create_directories(work / "embedder");
        static_cast<HashedEmbedder &>(*embedder).save(work / kHashedStateFile);
        fsync_path(work / kHashedStateFile);
        fsync_parent(work / kHashedStateFile);
    }

    // 4. Embeddings, shard by shard: append, fsync, then record the shard in progress.json.
    const uint64_t row_bytes = uint64_t(dim) * sizeof(float);
    const fs::path embeddings_path = work / kEmbeddingsFile;
    if (resumed > 0) {
        std::error_code ec;
        const auto have = fs::file_size(embeddings_path, ec);
        if (ec || have < uint64_t(resumed) * row_bytes)
            fail_hint(ErrorKind::bad_format, "pass --restart to start over",
                      "'{}' holds {} bytes, fewer than the {} texts its progress file records", embeddings_path.string(),
                      ec ? 0 : have, resumed);
    }
    const auto embed_start = Clock::now();
    int64_t embedded = 0;
    int64_t zero_rows = 0;
    {
        AppendFile out(embeddings_path, uint64_t(resumed) * row_bytes);
        for (int64_t shards_this_run = 0; shard < n_shards; ++shard) {
            const int64_t begin = shard * options.shard_size;
            const int64_t end = std::min(n, begin + options.shard_size);
            const std::vector<std::string> batch(inputs.texts.begin() + begin, inputs.texts.begin() + end);
            const at::Tensor vectors = embedder->embed(batch).contiguous();
            CT3_CHECK(vectors.dim() == 2 && vectors.size(0) == end - begin && vectors.size(1) == dim &&
                          vectors.scalar_type() == at::kFloat && vectors.device().is_cpu(),
                      ErrorKind::internal, "embedder returned a tensor of shape {} for {} texts of dim {}",
                      fmt::format("{}", fmt::join(vectors.sizes(), "x")), end - begin, dim);
            const float * data = vectors.data_ptr<float>();
            for (int64_t r = 0; r < end - begin; ++r) {
                double norm = 0;
                for (int64_t c = 0; c < dim; ++c) norm += double(data[r * dim + c]) * data[r * dim + c];
                CT3_CHECK(std::isfinite(norm), ErrorKind::internal, "embedding of entry {} is not finite", begin + r);
                if (norm == 0) zero_rows += 1;
            }
            out.append(data, size_t(end - begin) * row_bytes);
            out.sync();
            partial.record(shard + 1, end);
            embedded += end - begin;
            if (kill_after > 0 && ++shards_this_run == kill_after) {
                log->warn("{}={}: killing this process (SIGKILL) after {} shards, as a test", kKillEnv, kill_after,
                          shards_this_run);
                std::raise(SIGKILL);
            }
            if (on_progress) on_progress(BuildProgress{end, n, resumed, seconds_since(embed_start)});
        }
        out.close();
    }
    const double embed_seconds = seconds_since(embed_start);
    if (zero_rows > 0)
        log->warn("{} texts have no features for the embedder (all-zero vectors; they are never retrieved)", zero_rows);

    // 5. Index, texts, manifest; then the folder becomes save_dir.
    json index_info;
    {
        const MappedFile embeddings(embeddings_path);
        CT3_CHECK(embeddings.size() == uint64_t(n) * row_bytes, ErrorKind::internal,
                  "'{}' holds {} bytes after embedding (expected {})", embeddings_path.string(), embeddings.size(),
                  uint64_t(n) * row_bytes);
        log->info("building index \"{}\" over {} vectors of dim {}", options.index_factory, n, dim);
        index_info = build_index_files(reinterpret_cast<const float *>(embeddings.data()), n, dim, index_options, work);
    }
    {
        TextsWriter texts(work);
        for (int64_t i = 0; i < n; ++i)
            texts.add(inputs.sources[size_t(inputs.source_of[size_t(i)])].spec.name, inputs.rows[size_t(i)],
                      inputs.texts[size_t(i)]);
        texts.finish();
    }
    std::vector<std::string> names = {kIndexFile, kEmbeddingsFile, kTextsFile, kTextsIndexFile};
    if (options.on_disk_lists) names.push_back(kIvfDataFile);
    json embedder_info = identity;
    if (hashed) {
        names.push_back(kHashedStateFile);
        embedder_info["state_file"] = kHashedStateFile;
    } else {
        embedder_info["path"] = fs::absolute(options.embedder).lexically_normal().string();
    }
    json files = json::object();
    for (const auto & name : names) files[name] = file_entry(work / name);
    const double seconds = seconds_since(start);
    json manifest = {{"format", kFormatName},
                     {"format_version", kFormatVersion},
                     {"created", utc_now()},
                     {"ct3_version", CT3_VERSION_STRING},
                     {"count", n},
                     {"dim", dim},
                     {"metric", "inner_product"},
                     {"index", index_info},
                     {"embedder", embedder_info},
                     {"datasets", sources_json(inputs)},
                     {"duplicates", inputs.duplicates},
                     {"empty", inputs.empty},
                     {"decontaminated", inputs.decontaminated},
                     {"test_overlap", inputs.test_overlap},
                     {"decontamination", decontamination_json(inputs)},
                     {"files", files},
                     {"build",
                      {{"seconds", seconds},
                       {"embed_seconds", embed_seconds},
                       // embedding throughput of this run (texts embedded now / time spent embedding)
                       {"texts_per_second", embed_seconds > 0 ? double(embedded) / embed_seconds : 0.0},
                       {"resumed_texts", resumed},
                       {"args", options.args}}}};
    partial.finish();
    write_file_atomic(work / "manifest.json", manifest.dump(2) + "\n");
    install(work, save_dir, options.overwrite);
    log->info("knowledge base written to '{}'", save_dir.string());

    BuildReport report;
    report.manifest = std::move(manifest);
    report.resumed_texts = resumed;
    report.seconds = seconds_since(start);
    return report;
}

}  // namespace ct3::kb
