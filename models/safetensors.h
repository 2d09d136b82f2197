// safetensors reader/writer written against the format spec (huggingface/safetensors README):
//   u64 little-endian header length N | N bytes UTF-8 JSON header | packed little-endian tensor bytes
// Header entries: name -> {dtype, shape, data_offsets:[begin,end)} relative to the byte buffer,
// plus an optional "__metadata__" string->string map.
//
// The reader is hardened against hostile files: header length bound (100 MB) and within the file,
// JSON validated, duplicate keys rejected, dtype known, shape*itemsize == byte range, ranges
// inside the buffer, non-overlapping and covering it. Errors name the file and the tensor.
// Files are memory-mapped; tensors are materialised as torch tensors on request. A file truncated
// by another process *while mapped* can still raise SIGBUS; checkpoints are treated as immutable.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ct3 {

struct TensorInfo {
    std::string name;
    std::string dtype;             // "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F64"
    std::vector<int64_t> shape;
    uint64_t begin = 0;            // byte offsets into the data buffer, [begin, end)
    uint64_t end = 0;
};

class SafetensorsFile {
public:
    // Opens and validates; throws ct3::Error (bad_format / io) naming the file.
    static std::shared_ptr<SafetensorsFile> open(const std::filesystem::path & path);
    ~SafetensorsFile();

    const std::filesystem::path & path() const { return path_; }
    const std::map<std::string, std::string> & metadata() const { return metadata_; }
    const std::vector<TensorInfo> & tensors() const { return tensors_; }
    bool contains(const std::string & name) const;
    const TensorInfo & info(const std::string & name) const;  // throws not_found naming the file

    // A CPU tensor with the file's dtype and shape. It copies out of the mapping so the result
    // outlives the file (checkpoints are loaded once; a copy keeps ownership simple). Dtypes the spec
    // knows but torch 1.13 lacks (U16/U32/U64, F8_*, C64) open fine and throw `unsupported` here;
    // BOOL bytes other than 0/1 throw bad_format.
    at::Tensor load(const std::string & name) const;

private:
    SafetensorsFile() = default;
    std::filesystem::path path_;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;
    const uint8_t * map_ = nullptr;  // whole-file mapping
    size_t map_size_ = 0;
    size_t data_start_ = 0;          // 8 + N
};

// A model's weights across one file or shards (model.safetensors.index.json weight_map).
class Checkpoint {
public:
    // `path`: a folder (model.safetensors or model.safetensors.index.json inside), a .safetensors
    // file, or an index .json file. Each shard is opened once. Errors: a missing shard (not_found),
    // a weight_map tensor absent from its shard (bad_format); shard tensors missing from the
    // weight_map are only warned about and are not part of the checkpoint.
    static Checkpoint open(const std::filesystem::path & path);

    std::vector<std::string> names() const;  // sorted
    bool contains(const std::string & name) const;
    const TensorInfo & info(const std::string & name) const;
    at::Tensor load(const std::string & name) const;  // throws not_found naming the checkpoint

    const std::filesystem::path & path() const { return path_; }

private:
    std::filesystem::path path_;
    std::map<std::string, std::shared_ptr<SafetensorsFile>> by_name_;
};

// Writes tensors (any device/dtype among the supported ones; contiguous copies are made) to
// `path` atomically (`path`.tmp.<pid>, fsync, rename). Names are sorted; offsets are packed without
// gaps; the header is space-padded so the data starts 8-byte aligned. For single-dtype inputs the
// bytes equal what HF safetensors writes (HF orders mixed dtypes by alignment first).
void save_safetensors(const std::filesystem::path & path,
                      const std::vector<std::pair<std::string, at::Tensor>> & tensors,
                      const std::map<std::string, std::string> & metadata = {{"format", "pt"}});

}  // namespace ct3
