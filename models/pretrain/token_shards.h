// Token shards: the tokenised pretraining corpus on disk, and the tokeniser pass that writes them.
//
// Shard file (<prefix>_000.bin, ...): a 32-byte header then the tokens, little-endian:
//   offset  0  char[8]  magic "CT3TOKS1"
//           8  uint32   format version (1)
//          12  uint32   bytes per token: 2 when vocab_size <= 65535, else 4
//          16  uint64   token count
//          24  uint32   vocab size (every token is < vocab size)
//          28  uint32   reserved (0)
//          32  tokens   (count * bytes per token bytes; the file ends there)
// Shards are written atomically (temp file, fsync, rename) and read through a read-only mmap, so a
// data loader can cut random windows without reading whole shards.
//
// Manifest (<prefix>.json): format, token/document/UTF-8 byte counts (the bytes give bits-per-byte:
// bpb = loss_nats * tokens / (bytes * ln 2)), vocab size, tokenizer file and sha256, BOS/EOS ids, and
// the shard list as file names relative to the manifest's folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kb/kb_files.h"

namespace ct3 {
class Tokenizer;
}

namespace ct3::pretrain {

constexpr uint32_t kShardVersion = 1;
constexpr size_t kShardHeaderBytes = 32;

// 2 when every id of a vocab of this size fits uint16 (vocab_size <= 65535), else 4.
uint32_t shard_bytes_per_token(uint32_t vocab_size);

// Writes a shard atomically. Throws ct3::Error naming the file when a token is outside
// [0, vocab_size) or the file cannot be written.
void write_token_shard(const std::filesystem::path & path, const int32_t * tokens, size_t count, uint32_t vocab_size);
inline void write_token_shard(const std::filesystem::path & path, const std::vector<int32_t> & tokens,
                              uint32_t vocab_size) {
    write_token_shard(path, tokens.data(), tokens.size(), vocab_size);
}

// A shard mapped read-only. The constructor checks magic, version, width and size, and (when
// `validate`) that every token is < vocab size; failures are ct3::Error (bad_format) naming the file.
// Immutable after construction: safe to read from several threads.
class TokenShard {
public:
    explicit TokenShard(const std::filesystem::path & path, bool validate = true);

    uint64_t size() const { return count_; }
    uint32_t vocab_size() const { return vocab_size_; }
    uint32_t bytes_per_token() const { return width_; }
    const std::filesystem::path & path() const { return file_.path(); }

    int32_t at(uint64_t i) const;  // throws on i >= size()
    // Copies tokens [start, start + count) to `out` as int64 (the loader's tensor type).
    void copy_to(uint64_t start, uint64_t count, int64_t * out) const;
    std::vector<int32_t> to_vector() const;

private:
    kb::MappedFile file_;
    const uint8_t * tokens_ = nullptr;
    uint64_t count_ = 0;
    uint32_t vocab_size_ = 0, width_ = 0;
};

struct ShardManifest {
    uint64_t tokens = 0, documents = 0, utf8_bytes = 0;
    uint64_t skipped_documents = 0;  // empty "text"
    uint32_t vocab_size = 0, bytes_per_token = 0;
    int32_t bos_id = -1, eos_id = -1;
    std::string tokenizer_file, tokenizer_sha256;  // empty when unknown
    std::vector<std::filesystem::path> shards;     // resolved paths (file names in the JSON)
    std::vector<uint64_t> shard_tokens;            // token count of each shard

    // Shard names are stored relative to `manifest_dir`.
    nlohmann::json to_json(const std::filesystem::path & manifest_dir) const;
};

// Reads <prefix>.json (or a path to it) and resolves shard paths against its folder. Throws ct3::Error
// naming the file and field when it is missing or malformed.
ShardManifest read_shard_manifest(const std::filesystem::path & manifest_json);

struct TokenizeOptions {
    uint64_t shard_tokens = 100'000'000;  // tokens per shard (the last one holds the rest)
    int num_threads = 0;                  // 0 = hardware concurrency
    size_t batch_documents = 2048;        // documents read, then encoded in parallel, per round
    // Hashed into the manifest; when empty and `tok` is a SentencePieceTokenizer, its model file.
    std::filesystem::path tokenizer_file;
};

// Encodes every document of a corpus JSONL ({"source", "text"} per line) as [BOS] + ids + [EOS]
// into shards <out_prefix>_000.bin, ... of at most shard_tokens tokens each (documents may span
// shards: the loader sees one stream), in corpus order, using several threads; then writes
// <out_prefix>.json and returns its content. `tok.encode` must be safe to call concurrently (the
// SentencePiece, BPE and WordPiece tokenizers are). Documents with empty text are skipped (counted).
ShardManifest tokenize_corpus(const std::filesystem::path & corpus_jsonl, const Tokenizer & tok,
                              const std::filesystem::path & out_prefix, const TokenizeOptions & options = {});

// Calls `fn(text)` for the "text" of every record of a corpus JSONL, in order. Blank lines are
// skipped; a line that is not an object with a string "text" throws ct3::Error naming file:line.
void for_each_corpus_text(const std::filesystem::path & corpus_jsonl, const std::function<void(std::string &&)> & fn);

// Writes the tokenizer-training text of a corpus JSONL: every document split at '\n', one
// non-empty line per line (sentencepiece reads one sentence per line; see
// models/sentencepiece_trainer.h for how newlines survive tokenisation). Atomic. Returns lines written.
uint64_t write_training_text(const std::filesystem::path & corpus_jsonl, const std::filesystem::path & out_txt);

}  // namespace ct3::pretrain
