// CacheStore: index.json and the PEFT entry folders of a persisted adapter cache (see the header).
#include "client/adapter_cache_store.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <torch/torch.h>

#include "kb/kb_files.h"
#include "models/error.h"
#include "models/log.h"
#include "models/safetensors.h"
#include "models/strict_json.h"

namespace fs = std::filesystem;

namespace ct3::client {

namespace {

const char * const index_name = "index.json";
const char * const weights_name = "adapter_model.safetensors";
const char * const config_name = "adapter_config.json";

[[noreturn]] void fail_errno(const std::string & call, const fs::path & path) {
    fail(ErrorKind::io, "adapter cache: {} '{}' failed: {}", call, path.string(), std::strerror(errno));
}

// Strict field access for index.json entries: a missing or mistyped field names the file and entry.
template <typename T>
T get_field(const nlohmann::json & obj, const char * key, const fs::path & file, size_t i) {
    auto it = obj.find(key);
    CT3_CHECK(it != obj.end(), ErrorKind::bad_format, "{}: entries[{}] has no \"{}\"", file.string(), i, key);
    try {
        return it->get<T>();
    } catch (const nlohmann::json::exception &) {
        fail(ErrorKind::bad_format, "{}: entries[{}].{} has the wrong type", file.string(), i, key);
    }
}

StoredEntry parse_entry(const nlohmann::json & raw, const fs::path & file, size_t i) {
    CT3_CHECK(raw.is_object(), ErrorKind::bad_format, "{}: entries[{}] is not an object", file.string(), i);
    StoredEntry entry;
    entry.dir = get_field<std::string>(raw, "dir", file, i);
    CT3_CHECK(valid_entry_name(entry.dir), ErrorKind::bad_format,
              "{}: entries[{}].dir '{}' is not a plain folder name", file.string(), i, entry.dir);
    entry.query = get_field<std::string>(raw, "query", file, i);
    entry.key = get_field<std::vector<float>>(raw, "embedding", file, i);
    CT3_CHECK(!entry.key.empty(), ErrorKind::bad_format, "{}: entries[{}].embedding is empty", file.string(), i);
    for (float v : entry.key) {
        CT3_CHECK(std::isfinite(v), ErrorKind::bad_format, "{}: entries[{}].embedding is not finite", file.string(), i);
    }
    entry.uses = get_field<uint64_t>(raw, "uses", file, i);
    entry.last_used = get_field<uint64_t>(raw, "last_used", file, i);
    return entry;
}

}  // namespace

bool valid_entry_name(const std::string & name) {
    if (name.empty() || name == "." || name == ".." || name.size() > 200) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

CacheStore::CacheStore(fs::path dir, const std::string & adapter_config_json, std::string embedder, std::string device)
    : dir_(std::move(dir)), config_text_(adapter_config_json), embedder_(std::move(embedder)), device_(std::move(device)) {
    CT3_CHECK(!config_text_.empty(), ErrorKind::invalid_argument,
              "adapter cache: --adapter_cache_dir '{}' needs the adapter's adapter_config.json text (got none)",
              dir_.string());
    try {
        expected_config_ = parse_strict_json(config_text_, "the adapter cache's adapter_config_json");
    } catch (const Error & e) {
        fail(ErrorKind::invalid_argument, "{}", e.message());
    }
    std::error_code ec;
    fs::create_directories(dir_, ec);
    CT3_CHECK(!ec && fs::is_directory(dir_), ErrorKind::io, "adapter cache: cannot create folder '{}': {}",
              dir_.string(), ec ? ec.message() : "not a directory");
    const fs::path lock_path = dir_ / ".lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) fail_errno("open", lock_path);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const int saved = errno;
        ::close(lock_fd_);
        lock_fd_ = -1;
        if (saved == EWOULDBLOCK) {
            fail_hint(ErrorKind::unavailable, "use another --adapter_cache_dir, or wait for the other process to end",
                      "adapter cache folder '{}' is in use by another process or cache", dir_.string());
        }
        errno = saved;
        fail_errno("flock", lock_path);
    }
    // Continue numbering after the highest existing entry-N folder, so that names are never reused.
    uint64_t max_id = 0;
    for (const auto & item : fs::directory_iterator(dir_, ec)) {
        const std::string name = item.path().filename().string();
        if (name.rfind("entry-", 0) != 0) continue;
        try {
            max_id = std::max<uint64_t>(max_id, std::stoull(name.substr(6)));
        } catch (const std::exception &) {
        }
    }
    next_id_ = max_id + 1;
}

CacheStore::~CacheStore() {
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string CacheStore::reserve_name() {
    for (;;) {
        std::string name = fmt::format("entry-{:06d}", next_id_.fetch_add(1));
        std::error_code ec;
        if (!fs::exists(dir_ / name, ec)) return name;
    }
}

void CacheStore::write_entry(const std::string & name, const AdapterTensors & adapter) const {
    const fs::path folder = dir_ / name;
    try {
        std::error_code ec;
        fs::create_directory(folder, ec);
        if (ec) fail(ErrorKind::io, "adapter cache: cannot create folder '{}': {}", folder.string(), ec.message());
        kb::write_file_atomic(folder / config_name, config_text_);
        save_safetensors(folder / weights_name, adapter);
        kb::fsync_path(folder);
        kb::fsync_path(dir_);
    } catch (...) {
        std::error_code ec;
        fs::remove_all(folder, ec);
        throw;
    }
}

void CacheStore::write_index(CacheStrategy strategy, const std::vector<StoredEntry> & entries) const {
    // One entry a line keeps the file readable and diffable despite the embeddings.
    std::string text = fmt::format("{{\"version\":1,\"strategy\":\"{}\",\"entries\":[", cache_strategy_name(strategy));
    bool first = true;
    auto append = [&](const nlohmann::json & entry) {
        text += first ? "\n" : ",\n";
        first = false;
        // Queries are user text and may hold invalid UTF-8: replace rather than throw.
        text += entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    for (const StoredEntry & e : entries) {
        nlohmann::json entry = nlohmann::json::object();
        entry["dir"] = e.dir;
        entry["query"] = e.query;
        entry["embedding"] = e.key;
        entry["uses"] = e.uses;
        entry["last_used"] = e.last_used;
        if (!embedder_.empty()) entry["embedder"] = embedder_;
        append(entry);
    }
    for (const nlohmann::json & raw : foreign_) append(raw);
    text += "\n]}\n";
    kb::write_file_atomic(dir_ / index_name, text);
}

void CacheStore::remove_entry(const std::string & name) const {
    if (!valid_entry_name(name)) return;
    std::error_code ec;
    fs::remove_all(dir_ / name, ec);
    if (ec) logger("client")->warn("adapter cache: cannot delete evicted entry '{}': {}", (dir_ / name).string(), ec.message());
}

CacheStore::Verdict CacheStore::load_entry(const nlohmann::json & raw, size_t i, size_t & dim, LoadedEntry & out) const {
    auto log = logger("client");
    const fs::path index_path = dir_ / index_name;
    try {
        out.meta = parse_entry(raw, index_path, i);
    } catch (const Error & e) {
        log->warn("adapter cache: skipping an entry: {}", e.message());
        return Verdict::corrupt;
    }
    const fs::path folder = dir_ / out.meta.dir;
    auto it = raw.find("embedder");
    if (!embedder_.empty() && it != raw.end() && it->is_string() && it->get<std::string>() != embedder_) {
        log->warn("adapter cache: not loading {} (keys from embedder '{}', this run uses '{}')", folder.string(),
                  it->get<std::string>(), embedder_);
        return Verdict::foreign;
    }
    if (dim != 0 && out.meta.key.size() != dim) {
        log->warn("adapter cache: not loading {} (its key has {} dimensions, this run's have {})", folder.string(),
                  out.meta.key.size(), dim);
        return Verdict::foreign;
    }
    const fs::path config_path = folder / config_name;
    const fs::path weights_path = folder / weights_name;
    try {
        const nlohmann::json config = parse_strict_json(kb::read_whole_file(config_path, "adapter config"), config_path.string());
        if (config != expected_config_) {
            log->warn("adapter cache: not loading {}: it differs from this run's adapter config (the entry stays on disk)",
                      config_path.string());
            return Verdict::foreign;
        }
        auto file = SafetensorsFile::open(weights_path);
        CT3_CHECK(!file->tensors().empty(), ErrorKind::bad_format, "{} holds no tensors", weights_path.string());
        auto adapter = std::make_shared<AdapterTensors>();
        for (const TensorInfo & info : file->tensors()) adapter->emplace_back(info.name, file->load(info.name));
        out.adapter = std::move(adapter);
    } catch (const std::exception & e) {  // ct3::Error from the readers (std::bad_alloc, ...)
        log->warn("adapter cache: skipping entry '{}': {}", folder.string(), e.what());
        return Verdict::corrupt;
    }
    // A device failure (no GPU on this machine, out of memory) says nothing about the files: keep them.
    try {
        auto adapter = std::make_shared<AdapterTensors>();
        const at::Device device(device_);
        for (const auto & item : *out.adapter) adapter->emplace_back(item.first, item.second.to(device, at::kFloat));
        out.adapter = std::move(adapter);
    } catch (const c10::Error & e) {
        log->warn("adapter cache: not loading '{}' to {}: {} (the entry stays on disk)", folder.string(), device_,
                  e.what_without_backtrace());
        return Verdict::foreign;
    }
    if (dim == 0) dim = out.meta.key.size();
    return Verdict::ok;
}

std::vector<LoadedEntry> CacheStore::load(size_t embedding_dim) {
    auto log = logger("client");
    const fs::path index_path = dir_ / index_name;
    std::vector<LoadedEntry> loaded;
    std::error_code ec;
    if (!fs::exists(index_path, ec)) return loaded;
    nlohmann::json index;
    try {
        index = parse_strict_json(kb::read_whole_file(index_path, "adapter cache index"), index_path.string());
        CT3_CHECK(index.is_object(), ErrorKind::bad_format, "{} is not a JSON object", index_path.string());
        auto version = index.find("version");
        CT3_CHECK(version != index.end() && *version == 1, ErrorKind::bad_format,
                  "{}: \"version\" is missing or not 1", index_path.string());
        auto entries = index.find("entries");
        CT3_CHECK(entries != index.end() && entries->is_array(), ErrorKind::bad_format,
                  "{}: \"entries\" is missing or not an array", index_path.string());
    } catch (const std::exception & e) {
        log->warn("adapter cache: starting empty: {} (the file is replaced at the first insert)", e.what());
        return loaded;
    }
    size_t dim = embedding_dim;
    const nlohmann::json & entries = index["entries"];
    std::set<std::string> seen;  // two entries naming one folder: evicting one would delete the other's
    for (size_t i = 0; i < entries.size(); ++i) {
        LoadedEntry entry;
        Verdict verdict = load_entry(entries[i], i, dim, entry);
        if (verdict != Verdict::corrupt && !seen.insert(entry.meta.dir).second) {
            log->warn("adapter cache: skipping {}: entries[{}] names folder '{}' again", index_path.string(), i,
                      entry.meta.dir);
            verdict = Verdict::corrupt;
        }
        switch (verdict) {
            case Verdict::ok: loaded.push_back(std::move(entry)); break;
            case Verdict::foreign: foreign_.push_back(entries[i]); break;
            case Verdict::corrupt: break;
        }
    }
    log->info("adapter cache: loaded {} of {} entries from {}", loaded.size(), entries.size(), dir_.string());
    return loaded;
}

}  // namespace ct3::client
