// Checkpoint: one .safetensors file or shards listed by model.safetensors.index.json (declared in
// safetensors.h). All shards are mapped up front; mmap is lazy, so this costs address space, not RAM.
#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/close_names.h"
#include "models/error.h"
#include "models/log.h"
#include "models/safetensors.h"
#include "models/strict_json.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

// Index files are small (a few MB for the largest models); the cap keeps a hostile path such as
// /dev/zero from exhausting memory.
std::string read_index_text(const fs::path & index_path) {
    constexpr uintmax_t max_index_bytes = 100u * 1000u * 1000u;
    std::error_code ec;
    const uintmax_t size = fs::file_size(index_path, ec);
    CT3_CHECK(!ec, ErrorKind::io, "cannot read {}: {}", index_path.string(), ec.message());
    CT3_CHECK(size <= max_index_bytes, ErrorKind::bad_format, "{}: index is {} bytes (limit 100 MB)",
              index_path.string(), size);
    std::ifstream in(index_path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open {}", index_path.string());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CT3_CHECK(!in.bad(), ErrorKind::io, "cannot read {}", index_path.string());
    return text;
}

// Reads the index: weight_map tensor name -> shard path (relative to the index folder).
std::map<std::string, fs::path> read_weight_map(const fs::path & index_path) {
    const std::string file = index_path.string();
    const nlohmann::json index = parse_strict_json(read_index_text(index_path), file);
    CT3_CHECK(index.is_object(), ErrorKind::bad_format, "{}: index is a JSON {} (expected an object)", file,
              index.type_name());
    auto map_it = index.find("weight_map");
    CT3_CHECK(map_it != index.end() && map_it->is_object(), ErrorKind::bad_format,
              "{}: index has no object field 'weight_map'", file);
    std::map<std::string, fs::path> weight_map;
    for (const auto & [name, shard] : map_it->items()) {
        CT3_CHECK(shard.is_string(), ErrorKind::bad_format, "{}: weight_map entry for tensor '{}' is a {} (expected a "
                  "shard file name)", file, name, shard.type_name());
        const fs::path shard_path(shard.get<std::string>());
        // Shards live beside the index; an absolute or '..' path would let an index read anywhere.
        bool escapes = shard_path.empty() || shard_path.is_absolute();
        for (const auto & part : shard_path) escapes = escapes || part == "..";
        CT3_CHECK(!escapes, ErrorKind::bad_format,
                  "{}: weight_map entry for tensor '{}' names shard '{}' (expected a file beside the index)", file,
                  name, shard_path.string());
        // Normalised so that "./a.safetensors" and "a.safetensors" open the shard once.
        weight_map[name] = (index_path.parent_path() / shard_path).lexically_normal();
    }
    return weight_map;
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path & path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    CT3_CHECK(fs::exists(status), ErrorKind::not_found, "checkpoint {} does not exist", path.string());

    fs::path single;
    fs::path index_path;
    if (fs::is_directory(status)) {
        // The single file wins when both exist, as in transformers.
        if (fs::exists(path / "model.safetensors")) {
            single = path / "model.safetensors";
        } else if (fs::exists(path / "model.safetensors.index.json")) {
            index_path = path / "model.safetensors.index.json";
        } else {
            fail_hint(ErrorKind::not_found, "pass a Hugging Face model folder or a .safetensors file",
                      "checkpoint folder {} has neither model.safetensors nor model.safetensors.index.json",
                      path.string());
        }
    } else if (path.extension() == ".json") {
        index_path = path;
    } else {
        single = path;
    }

    Checkpoint ckpt;
    ckpt.path_ = path;
    if (!single.empty()) {
        auto file = SafetensorsFile::open(single);
        for (const auto & t : file->tensors()) ckpt.by_name_[t.name] = file;
        return ckpt;
    }

    const auto weight_map = read_weight_map(index_path);
    std::map<fs::path, std::vector<std::string>> by_shard;
    for (const auto & [name, shard] : weight_map) by_shard[shard].push_back(name);
    for (const auto & [shard_path, names] : by_shard) {
        CT3_CHECK(fs::exists(shard_path), ErrorKind::not_found, "{}: shard {} (holding tensor '{}') does not exist",
                  index_path.string(), shard_path.string(), names.front());
        auto shard = SafetensorsFile::open(shard_path);  // each shard once
        for (const auto & name : names) {
            CT3_CHECK(shard->contains(name), ErrorKind::bad_format,
                      "{}: weight_map puts tensor '{}' in shard {}, which does not contain it", index_path.string(),
                      name, shard_path.string());
            ckpt.by_name_[name] = shard;
        }
        // Extra tensors are harmless (the index decides what the checkpoint holds) but suggest a stale index.
        const std::set<std::string> listed(names.begin(), names.end());
        size_t n_extra = 0;
        for (const auto & t : shard->tensors()) n_extra += listed.count(t.name) == 0;
        if (n_extra > 0) {
            logger("model")->warn("{}: shard {} has {} tensors not listed in weight_map; they are ignored",
                                  index_path.string(), shard_path.string(), n_extra);
        }
    }
    return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
    std::vector<std::string> out;
    out.reserve(by_name_.size());
    for (const auto & [name, file] : by_name_) out.push_back(name);
    return out;  // std::map keeps them sorted
}

bool Checkpoint::contains(const std::string & name) const { return by_name_.count(name) != 0; }

const TensorInfo & Checkpoint::info(const std::string & name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
        fail(ErrorKind::not_found, "tensor '{}' not found in checkpoint {} ({} tensors{})", name, path_.string(),
             by_name_.size(), describe_close_names(name, names()));
    }
    return it->second->info(name);
}

at::Tensor Checkpoint::load(const std::string & name) const {
    info(name);  // the not_found error names the checkpoint rather than a shard
    return by_name_.at(name)->load(name);
}

}  // namespace ct3
