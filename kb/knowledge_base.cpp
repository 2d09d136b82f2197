// KnowledgeBase::open: a KB folder (format in knowledge_base.h) verified and mapped.
//
// Verification order matters: sizes and checksums first, so FAISS (which trusts its input) never
// parses a corrupt index.faiss; then the index against the manifest; then the embedder.
#include "kb/knowledge_base.h"

#include <algorithm>
#include <cstring>

#include <faiss/Index.h>

#include "kb/kb_files.h"
#include "kb/kb_index.h"
#include "kb/kb_texts.h"
#include "models/embedder.h"
#include "models/error.h"
#include "models/hashed_embedder.h"
#include "models/log.h"
#include "models/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3::kb {

namespace {

constexpr const char * kManifestFile = "manifest.json";
constexpr const char * kEmbeddingsFile = "embeddings.f32";

uint64_t load_u64(const uint8_t * p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

// Typed access to manifest.json: every error names the KB folder, the file and the field.
class Manifest {
public:
    Manifest(const fs::path & dir, json value) : dir_(dir), path_(dir / kManifestFile), value_(std::move(value)) {}

    const json & value() const { return value_; }
    const fs::path & path() const { return path_; }

    // obj[key] for the dotted field name `name`, checked with `ok` (described by `expected`).
    template <typename Pred>
    const json & get(const json & obj, const char * key, const std::string & name, Pred ok,
                     const char * expected) const {
        auto it = obj.find(key);
        CT3_CHECK(it != obj.end(), ErrorKind::bad_format, "'{}': field '{}' is missing (expected {})", path_.string(),
                  name, expected);
        CT3_CHECK(ok(*it), ErrorKind::bad_format, "'{}': field '{}' is {} (expected {})", path_.string(), name,
                  it->dump(), expected);
        return *it;
    }
    const json & object(const json & obj, const char * key, const std::string & name) const {
        return get(obj, key, name, [](const json & v) { return v.is_object(); }, "an object");
    }
    std::string string(const json & obj, const char * key, const std::string & name) const {
        return get(obj, key, name, [](const json & v) { return v.is_string(); }, "a string").get<std::string>();
    }
    int64_t integer(const json & obj, const char * key, const std::string & name, int64_t min, int64_t max) const {
        const std::string expected = fmt::format("an integer in {}..{}", min, max);
        return get(obj, key, name,
                   [&](const json & v) {
                       return v.is_number_integer() && v.get<int64_t>() >= min && v.get<int64_t>() <= max;
                   },
                   expected.c_str())
            .get<int64_t>();
    }
    bool boolean(const json & obj, const char * key, const std::string & name) const {
        return get(obj, key, name, [](const json & v) { return v.is_boolean(); }, "true or false").get<bool>();
    }

private:
    fs::path dir_;
    fs::path path_;
    json value_;
};

class FolderKb final : public KnowledgeBase {
public:
    FolderKb(const fs::path & dir, const OpenOptions & options);

    const fs::path & dir() const override { return dir_; }
    const json & manifest() const override { return manifest_; }
    int64_t size() const override { return count_; }
    int64_t dim() const override { return dim_; }
    const faiss::Index & index() const override { return *index_; }

    const float * embedding(int64_t id) const override {
        CT3_ASSERT(id >= 0 && id < count_);
        return reinterpret_cast<const float *>(embeddings_.data()) + id * dim_;
    }

    Entry entry(int64_t id) const override {
        CT3_CHECK(id >= 0 && id < count_, ErrorKind::not_found, "entry {} does not exist (knowledge base '{}' has {})",
                  id, dir_.string(), count_);
        const uint64_t begin = load_u64(offsets_.data() + 8 * id);
        const uint64_t end = load_u64(offsets_.data() + 8 * (id + 1));
        const auto * bytes = reinterpret_cast<const char *>(texts_.data());
        CT3_CHECK(end > begin && bytes[end - 1] == '\n', ErrorKind::bad_format,
                  "'{}' line {}: not terminated by a newline at the offset texts.idx gives", texts_.path().string(),
                  id + 1);
        return parse_text_line(std::string_view(bytes + begin, size_t(end - begin - 1)), id, texts_.path());
    }

    std::string text(int64_t id) const override { return entry(id).text; }

    std::string dataset(int64_t id) const override {
        CT3_CHECK(id >= 0 && id < count_, ErrorKind::not_found, "entry {} does not exist (knowledge base '{}' has {})",
                  id, dir_.string(), count_);
        // Entries of one dataset are contiguous (manifest datasets[].first_id): no text parse needed.
        auto it = std::upper_bound(first_ids_.begin(), first_ids_.end(), id);
        return dataset_names_[size_t(it - first_ids_.begin()) - 1];
    }

    Embedder & embedder() override {
        CT3_CHECK(embedder_ != nullptr, ErrorKind::unavailable,
                  "knowledge base '{}' was opened without its embedder (OpenOptions::load_embedder = false)",
                  dir_.string());
        return *embedder_;
    }
    const json & embedder_identity() const override { return identity_; }

private:
    void check_files(const Manifest & m, bool on_disk, const std::string & state_file, bool verify);
    void check_datasets(const Manifest & m);
    void map_texts();
    void load_embedder(const Manifest & m, const OpenOptions & options);

    fs::path dir_;
    json manifest_;
    int64_t count_ = 0;
    int64_t dim_ = 0;
    std::unique_ptr<faiss::Index> index_;
    MappedFile embeddings_;
    MappedFile texts_;
    MappedFile offsets_;
    std::vector<int64_t> first_ids_;
    std::vector<std::string> dataset_names_;
    std::unique_ptr<Embedder> embedder_;
    json identity_;
};

FolderKb::FolderKb(const fs::path & dir, const OpenOptions & options) : dir_(dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        fail_hint(ErrorKind::not_found, "build one with: ct3-build-kb --datasets gsm8k --save_dir DIR",
                  "knowledge base folder '{}' does not exist", dir.string());
    const fs::path manifest_path = dir / kManifestFile;
    const std::string text = read_whole_file(manifest_path, "knowledge-base manifest");
    json parsed;
    try {
        parsed = json::parse(text);
    } catch (const json::exception & e) {
        fail(ErrorKind::bad_format, "'{}': not valid JSON ({})", manifest_path.string(), e.what());
    }
    CT3_CHECK(parsed.is_object(), ErrorKind::bad_format, "'{}': expected a JSON object", manifest_path.string());
    const Manifest m(dir, std::move(parsed));
    const json & root = m.value();

    const std::string format = m.string(root, "format", "format");
    CT3_CHECK(format == kFormatName, ErrorKind::bad_format, "'{}': field 'format' is \"{}\" (expected \"{}\")",
              manifest_path.string(), format, kFormatName);
    const int64_t version = m.integer(root, "format_version", "format_version", 0, INT32_MAX);
    if (version != kFormatVersion)
        fail_hint(ErrorKind::unsupported, "rebuild the knowledge base with this ct3-build-kb",
                  "'{}': format_version {} is not supported (this build reads format_version {})",
                  manifest_path.string(), version, kFormatVersion);
    count_ = m.integer(root, "count", "count", 0, int64_t(1) << 40);
    dim_ = m.integer(root, "dim", "dim", 1, 65536);
    const std::string metric = m.string(root, "metric", "metric");
    CT3_CHECK(metric == "inner_product", ErrorKind::unsupported,
              "'{}': field 'metric' is \"{}\" (expected \"inner_product\")", manifest_path.string(), metric);
    const json & index_info = m.object(root, "index", "index");
    m.string(index_info, "factory", "index.factory");
    const int64_t ntotal = m.integer(index_info, "ntotal", "index.ntotal", 0, int64_t(1) << 40);
    CT3_CHECK(ntotal == count_, ErrorKind::bad_format, "'{}': field 'index.ntotal' is {} (expected count = {})",
              manifest_path.string(), ntotal, count_);
    const bool on_disk = m.boolean(index_info, "on_disk", "index.on_disk");

    const json & embedder_info = m.object(root, "embedder", "embedder");
    m.string(embedder_info, "type", "embedder.type");
    const int64_t embedder_dim = m.integer(embedder_info, "dim", "embedder.dim", 1, 65536);
    CT3_CHECK(embedder_dim == dim_, ErrorKind::bad_format, "'{}': field 'embedder.dim' is {} (expected dim = {})",
              manifest_path.string(), embedder_dim, dim_);
    const std::string state_file =
        embedder_info.contains("state_file") ? m.string(embedder_info, "state_file", "embedder.state_file") : "";
    identity_ = embedder_info;
    identity_.erase("state_file");
    identity_.erase("path");

    check_files(m, on_disk, state_file, options.verify_checksums);
    check_datasets(m);

    embeddings_ = MappedFile(dir / kEmbeddingsFile);
    const uint64_t expected_bytes = uint64_t(count_) * uint64_t(dim_) * 4;
    CT3_CHECK(embeddings_.size() == expected_bytes, ErrorKind::bad_format,
              "'{}' holds {} bytes (expected count {} x dim {} x 4 = {})", embeddings_.path().string(),
              embeddings_.size(), count_, dim_, expected_bytes);
    map_texts();

    index_ = read_index_files(dir, on_disk, options.mmap_index);
    const fs::path index_path = dir / kIndexFile;
    CT3_CHECK(index_->d == dim_, ErrorKind::bad_format, "'{}': index dimension d = {} (expected dim = {} from '{}')",
              index_path.string(), index_->d, dim_, manifest_path.string());
    CT3_CHECK(int64_t(index_->ntotal) == count_, ErrorKind::bad_format,
              "'{}': index holds ntotal = {} vectors (expected count = {} from '{}')", index_path.string(),
              int64_t(index_->ntotal), count_, manifest_path.string());
    CT3_CHECK(index_->metric_type == faiss::METRIC_INNER_PRODUCT, ErrorKind::bad_format,
              "'{}': index metric is {} (expected inner product)", index_path.string(), int(index_->metric_type));

    if (options.load_embedder) load_embedder(m, options);
    manifest_ = m.value();
    logger("kb")->debug("opened knowledge base '{}': {} entries, dim {}, index \"{}\"", dir.string(), count_, dim_,
                        index_info["factory"].get<std::string>());
}

void FolderKb::check_files(const Manifest & m, bool on_disk, const std::string & state_file, bool verify) {
    const json & files = m.object(m.value(), "files", "files");
    std::vector<std::string> required = {kEmbeddingsFile, kTextsFile, kTextsIndexFile, kIndexFile};
    if (on_disk) required.push_back(kIvfDataFile);
    if (!state_file.empty()) required.push_back(state_file);
    for (const auto & name : required)
        CT3_CHECK(files.contains(name), ErrorKind::bad_format, "'{}': field 'files' does not list \"{}\"",
                  m.path().string(), name);
    for (const auto & [name, info] : files.items()) {
        const std::string field = "files." + name;
        const fs::path rel(name);
        const bool inside = !name.empty() && rel.is_relative() &&
                            std::none_of(rel.begin(), rel.end(), [](const fs::path & p) { return p == ".."; });
        CT3_CHECK(inside, ErrorKind::bad_format, "'{}': field '{}' names a file outside the folder",
                  m.path().string(), field);
        CT3_CHECK(info.is_object(), ErrorKind::bad_format, "'{}': field '{}' is not an object", m.path().string(),
                  field);
        const int64_t bytes = m.integer(info, "bytes", field + ".bytes", 0, INT64_MAX);
        const std::string sha = m.string(info, "sha256", field + ".sha256");
        const fs::path path = dir_ / rel;
        std::error_code ec;
        const auto size = fs::file_size(path, ec);
        CT3_CHECK(!ec, ErrorKind::not_found, "'{}' is missing (listed in '{}' field '{}')", path.string(),
                  m.path().string(), field);
        CT3_CHECK(int64_t(size) == bytes, ErrorKind::bad_format,
                  "'{}' holds {} bytes (expected {} from '{}' field '{}.bytes'): truncated or modified",
                  path.string(), size, bytes, m.path().string(), field);
        if (!verify) continue;
        const std::string actual = sha256_file(path);
        if (actual != sha)
            fail_hint(ErrorKind::bad_format, "rebuild the knowledge base (or skip the check: verify_checksums = false)",
                      "'{}': sha256 is {} (expected {} from '{}' field '{}.sha256'): the file is corrupt or was "
                      "modified", path.string(), actual, sha, m.path().string(), field);
    }
}

void FolderKb::check_datasets(const Manifest & m) {
    const json & datasets = m.get(m.value(), "datasets", "datasets", [](const json & v) { return v.is_array(); },
                                  "an array");
    int64_t next = 0;
    for (size_t i = 0; i < datasets.size(); ++i) {
        const std::string prefix = fmt::format("datasets[{}]", i);
        CT3_CHECK(datasets[i].is_object(), ErrorKind::bad_format, "'{}': field '{}' is not an object",
                  m.path().string(), prefix);
        const std::string name = m.string(datasets[i], "name", prefix + ".name");
        const int64_t entries = m.integer(datasets[i], "entries", prefix + ".entries", 0, count_);
        const int64_t first = m.integer(datasets[i], "first_id", prefix + ".first_id", 0, count_);
        CT3_CHECK(first == next, ErrorKind::bad_format, "'{}': field '{}.first_id' is {} (expected {})",
                  m.path().string(), prefix, first, next);
        if (entries > 0) {
            first_ids_.push_back(first);
            dataset_names_.push_back(name);
        }
        next += entries;
    }
    CT3_CHECK(next == count_, ErrorKind::bad_format, "'{}': the datasets' entries sum to {} (expected count = {})",
              m.path().string(), next, count_);
}

void FolderKb::map_texts() {
    texts_ = MappedFile(dir_ / kTextsFile);
    offsets_ = MappedFile(dir_ / kTextsIndexFile);
    const std::string idx = offsets_.path().string();
    CT3_CHECK(offsets_.size() == uint64_t(count_ + 1) * 8, ErrorKind::bad_format,
              "'{}' holds {} bytes (expected (count {} + 1) x 8 = {})", idx, offsets_.size(), count_,
              uint64_t(count_ + 1) * 8);
    uint64_t previous = load_u64(offsets_.data());
    CT3_CHECK(previous == 0, ErrorKind::bad_format, "'{}': offset 0 is {} (expected 0)", idx, previous);
    for (int64_t i = 1; i <= count_; ++i) {
        const uint64_t offset = load_u64(offsets_.data() + 8 * i);
        CT3_CHECK(offset > previous, ErrorKind::bad_format, "'{}': offset {} is {}, not above offset {} = {}", idx, i,
                  offset, i - 1, previous);
        previous = offset;
    }
    CT3_CHECK(previous == texts_.size(), ErrorKind::bad_format, "'{}': last offset {} (expected the size of '{}', {})",
              idx, previous, texts_.path().string(), texts_.size());
}

void FolderKb::load_embedder(const Manifest & m, const OpenOptions & options) {
    const json & info = m.value()["embedder"];
    const std::string type = info["type"].get<std::string>();
    std::string source;
    if (type == "hashed") {
        const std::string state = m.string(info, "state_file", "embedder.state_file");
        source = (dir_ / state).string();
        embedder_ = std::make_unique<HashedEmbedder>(HashedEmbedder::load(dir_ / state));
    } else if (type == "sentence-transformers") {
        source = !options.embedder_path.empty() ? options.embedder_path : m.string(info, "path", "embedder.path");
        EmbedderOptions embedder_options;
        embedder_options.device = options.embedder_device;
        embedder_ = ct3::load_embedder(source, embedder_options);
    } else {
        fail(ErrorKind::unsupported, "'{}': field 'embedder.type' is \"{}\" (this build restores \"hashed\" and "
             "\"sentence-transformers\")", m.path().string(), type);
    }
    const json actual = embedder_->identity();
    if (actual != identity_)
        fail_hint(ErrorKind::bad_format,
                  type == "hashed" ? "the embedder state file was replaced; rebuild the knowledge base"
                                   : "pass the model folder the knowledge base was built with",
                  "knowledge base '{}': the embedder restored from '{}' has identity {} but '{}' field 'embedder' "
                  "records {}", dir_.string(), source, actual.dump(), m.path().string(), identity_.dump());
}

}  // namespace

std::unique_ptr<KnowledgeBase> KnowledgeBase::open(const fs::path & dir, const OpenOptions & options) {
    return std::make_unique<FolderKb>(dir, options);
}

}  // namespace ct3::kb
