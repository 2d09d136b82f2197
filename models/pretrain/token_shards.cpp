#include "models/pretrain/token_shards.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"
#include "models/sha256.h"
#include "models/tokenizer.h"
#include "models/tokenizer_sentencepiece.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are read and written in host byte order, which must be little-endian"
#endif

namespace fs = std::filesystem;

namespace ct3::pretrain {

namespace {

constexpr char kMagic[8] = {'C', 'T', '3', 'T', 'O', 'K', 'S', '1'};

template <typename T>
T load(const uint8_t * p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

template <typename T>
void store(uint8_t * p, T v) {
    std::memcpy(p, &v, sizeof(T));
}

fs::path temp_path(const fs::path & path) {
    return path.string() + ".tmp." + std::to_string(::getpid());
}

// Renames a finished temp file into place and makes the rename durable.
void publish(const fs::path & tmp, const fs::path & path) {
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        fail(ErrorKind::io, "cannot rename '{}' to '{}': {}", tmp.string(), path.string(), ec.message());
    }
    kb::fsync_parent(path);
}

// Streams a file through `write` into a temp file beside `path`, fsyncs it and renames it into
// place; on any failure the temp file is removed and the error rethrown.
void write_streamed_atomic(const fs::path & path, const std::function<void(kb::AppendFile &)> & write) {
    const fs::path tmp = temp_path(path);
    try {
        kb::AppendFile out(tmp, 0);
        write(out);
        out.sync();
        out.close();
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
    publish(tmp, path);
}

}  // namespace

uint32_t shard_bytes_per_token(uint32_t vocab_size) {
    return vocab_size <= 65535 ? 2 : 4;
}

//
// writing
//

void write_token_shard(const fs::path & path, const int32_t * tokens, size_t count, uint32_t vocab_size) {
    CT3_CHECK(vocab_size > 0, ErrorKind::invalid_argument, "token shard '{}': vocab size 0", path.string());
    const uint32_t width = shard_bytes_per_token(vocab_size);
    for (size_t i = 0; i < count; ++i) {
        CT3_CHECK(tokens[i] >= 0 && static_cast<uint32_t>(tokens[i]) < vocab_size, ErrorKind::invalid_argument,
                  "token shard '{}': token {} at position {} is outside the vocabulary [0, {})", path.string(),
                  tokens[i], i, vocab_size);
    }
    uint8_t header[kShardHeaderBytes] = {};
    std::memcpy(header, kMagic, sizeof(kMagic));
    store<uint32_t>(header + 8, kShardVersion);
    store<uint32_t>(header + 12, width);
    store<uint64_t>(header + 16, count);
    store<uint32_t>(header + 24, vocab_size);

    write_streamed_atomic(path, [&](kb::AppendFile & out) {
        out.append(header, sizeof(header));
        std::vector<uint8_t> buffer;
        constexpr size_t kChunk = 1 << 20;  // tokens per write
        for (size_t start = 0; start < count; start += kChunk) {
            const size_t n = std::min(kChunk, count - start);
            buffer.resize(n * width);
            for (size_t i = 0; i < n; ++i) {
                if (width == 2) {
                    store<uint16_t>(buffer.data() + 2 * i, static_cast<uint16_t>(tokens[start + i]));
                } else {
                    store<uint32_t>(buffer.data() + 4 * i, static_cast<uint32_t>(tokens[start + i]));
                }
            }
            out.append(buffer.data(), buffer.size());
        }
    });
}

//
// reading
//

TokenShard::TokenShard(const fs::path & path, bool validate) {
    std::error_code ec;
    CT3_CHECK(fs::is_regular_file(path, ec), ErrorKind::not_found, "token shard '{}' not found", path.string());
    file_ = kb::MappedFile(path);
    const uint8_t * p = file_.data();
    const size_t size = file_.size();
    CT3_CHECK(size >= kShardHeaderBytes && std::memcmp(p, kMagic, sizeof(kMagic)) == 0, ErrorKind::bad_format,
              "token shard '{}' is not a ct3 token shard (expected the magic \"CT3TOKS1\" in a 32-byte header)",
              path.string());
    const uint32_t version = load<uint32_t>(p + 8);
    CT3_CHECK(version == kShardVersion, ErrorKind::bad_format, "token shard '{}' has format version {} (expected {})",
              path.string(), version, kShardVersion);
    width_ = load<uint32_t>(p + 12);
    count_ = load<uint64_t>(p + 16);
    vocab_size_ = load<uint32_t>(p + 24);
    CT3_CHECK(vocab_size_ > 0 && width_ == shard_bytes_per_token(vocab_size_), ErrorKind::bad_format,
              "token shard '{}': {} bytes per token for vocab size {} (expected {})", path.string(), width_,
              vocab_size_, vocab_size_ > 0 ? shard_bytes_per_token(vocab_size_) : 0);
    const uint64_t payload = size - kShardHeaderBytes;
    CT3_CHECK(count_ <= payload / width_ && payload == count_ * width_, ErrorKind::bad_format,
              "token shard '{}' holds {} bytes of tokens but its header says {} tokens of {} bytes (truncated or "
              "corrupt)",
              path.string(), payload, count_, width_);
    tokens_ = p + kShardHeaderBytes;
    if (!validate) return;
    for (uint64_t i = 0; i < count_; ++i) {
        const uint32_t t = width_ == 2 ? load<uint16_t>(tokens_ + 2 * i) : load<uint32_t>(tokens_ + 4 * i);
        CT3_CHECK(t < vocab_size_, ErrorKind::bad_format,
                  "token shard '{}': token {} at position {} is outside the vocabulary [0, {})", path.string(), t, i,
                  vocab_size_);
    }
}

int32_t TokenShard::at(uint64_t i) const {
    CT3_CHECK(i < count_, ErrorKind::invalid_argument, "token shard '{}': position {} is past its {} tokens",
              path().string(), i, count_);
    return static_cast<int32_t>(width_ == 2 ? load<uint16_t>(tokens_ + 2 * i) : load<uint32_t>(tokens_ + 4 * i));
}

void TokenShard::copy_to(uint64_t start, uint64_t count, int64_t * out) const {
    CT3_CHECK(start <= count_ && count <= count_ - start, ErrorKind::invalid_argument,
              "token shard '{}': tokens [{}, {}) are past its {} tokens", path().string(), start, start + count,
              count_);
    if (width_ == 2) {
        for (uint64_t i = 0; i < count; ++i) out[i] = load<uint16_t>(tokens_ + 2 * (start + i));
    } else {
        for (uint64_t i = 0; i < count; ++i) out[i] = load<uint32_t>(tokens_ + 4 * (start + i));
    }
}

std::vector<int32_t> TokenShard::to_vector() const {
    std::vector<int32_t> out(count_);
    for (uint64_t i = 0; i < count_; ++i) out[i] = at(i);
    return out;
}

//
// manifest
//

nlohmann::json ShardManifest::to_json(const fs::path & manifest_dir) const {
    nlohmann::json shard_list = nlohmann::json::array();
    for (size_t i = 0; i < shards.size(); ++i) {
        shard_list.push_back({{"file", shards[i].lexically_relative(manifest_dir).generic_string()},
                              {"tokens", i < shard_tokens.size() ? shard_tokens[i] : 0}});
    }
    return {{"format", "CT3TOKS1"},
            {"version", kShardVersion},
            {"tokens", tokens},
            {"documents", documents},
            {"skipped_documents", skipped_documents},
            {"utf8_bytes", utf8_bytes},
            {"vocab_size", vocab_size},
            {"bytes_per_token", bytes_per_token},
            {"bos_id", bos_id},
            {"eos_id", eos_id},
            {"tokenizer_file", tokenizer_file},
            {"tokenizer_sha256", tokenizer_sha256},
            {"shards", shard_list}};
}

ShardManifest read_shard_manifest(const fs::path & manifest_json) {
    const std::string text = kb::read_whole_file(manifest_json, "token shard manifest");
    const std::string name = manifest_json.string();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "token shard manifest '{}' is not valid JSON: {}", name, e.what());
    }
    CT3_CHECK(j.is_object() && j.value("format", "") == "CT3TOKS1", ErrorKind::bad_format,
              "token shard manifest '{}': expected an object with \"format\": \"CT3TOKS1\"", name);
    ShardManifest m;
    auto u64 = [&](const char * key) {
        CT3_CHECK(j.contains(key) && j[key].is_number_unsigned(), ErrorKind::bad_format,
                  "token shard manifest '{}': field \"{}\" must be an unsigned integer", name, key);
        return j[key].get<uint64_t>();
    };
    auto i32 = [&](const char * key) {
        CT3_CHECK(j.contains(key) && j[key].is_number_integer(), ErrorKind::bad_format,
                  "token shard manifest '{}': field \"{}\" must be an integer", name, key);
        return j[key].get<int32_t>();
    };
    m.tokens = u64("tokens");
    m.documents = u64("documents");
    m.skipped_documents = j.contains("skipped_documents") ? u64("skipped_documents") : 0;
    m.utf8_bytes = u64("utf8_bytes");
    m.vocab_size = static_cast<uint32_t>(u64("vocab_size"));
    m.bytes_per_token = static_cast<uint32_t>(u64("bytes_per_token"));
    m.bos_id = i32("bos_id");
    m.eos_id = i32("eos_id");
    m.tokenizer_file = j.value("tokenizer_file", "");
    m.tokenizer_sha256 = j.value("tokenizer_sha256", "");
    CT3_CHECK(j.contains("shards") && j["shards"].is_array(), ErrorKind::bad_format,
              "token shard manifest '{}': field \"shards\" must be an array", name);
    const fs::path dir = manifest_json.parent_path();
    uint64_t total = 0;
    for (const auto & s : j["shards"]) {
        CT3_CHECK(s.is_object() && s.contains("file") && s["file"].is_string() && s.contains("tokens") &&
                      s["tokens"].is_number_unsigned(),
                  ErrorKind::bad_format,
                  "token shard manifest '{}': every entry of \"shards\" needs \"file\" (string) and \"tokens\"", name);
        m.shards.push_back(dir / s["file"].get<std::string>());
        m.shard_tokens.push_back(s["tokens"].get<uint64_t>());
        total += m.shard_tokens.back();
    }
    CT3_CHECK(total == m.tokens, ErrorKind::bad_format,
              "token shard manifest '{}': its shards hold {} tokens but \"tokens\" says {}", name, total, m.tokens);
    return m;
}

//
// corpus reading
//

void for_each_corpus_text(const fs::path & corpus_jsonl, const std::function<void(std::string &&)> & fn) {
    std::ifstream in(corpus_jsonl, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::not_found, "corpus '{}' cannot be opened", corpus_jsonl.string());
    std::string line;
    uint64_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json record;
        try {
            record = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception & e) {
            fail(ErrorKind::bad_format, "corpus '{}' line {}: not valid JSON: {}", corpus_jsonl.string(), line_no,
                 e.what());
        }
        CT3_CHECK(record.is_object() && record.contains("text") && record["text"].is_string(), ErrorKind::bad_format,
                  "corpus '{}' line {}: expected an object with a string field \"text\"", corpus_jsonl.string(),
                  line_no);
        fn(std::move(record["text"].get_ref<std::string &>()));
    }
    CT3_CHECK(!in.bad(), ErrorKind::io, "corpus '{}': read error after line {}", corpus_jsonl.string(), line_no);
}

uint64_t write_training_text(const fs::path & corpus_jsonl, const fs::path & out_txt) {
    uint64_t lines = 0;
    write_streamed_atomic(out_txt, [&](kb::AppendFile & out) {
        std::string buffer;
        for_each_corpus_text(corpus_jsonl, [&](std::string && text) {
            for (size_t start = 0; start < text.size();) {
                size_t end = text.find('\n', start);
                if (end == std::string::npos) end = text.size();
                size_t stop = end;
                if (stop > start && text[stop - 1] == '\r') --stop;  // CRLF documents
                if (stop > start) {
                    buffer.append(text, start, stop - start);
                    buffer += '\n';
                    ++lines;
                }
                start = end + 1;
            }
            if (buffer.size() > (1 << 20)) {
                out.append(buffer.data(), buffer.size());
                buffer.clear();
            }
        });
        out.append(buffer.data(), buffer.size());
    });
    return lines;
}

//
// tokenize_corpus
//

namespace {

// Encodes texts[i] as [BOS] + ids + [EOS] for all i, split over `threads` contiguous slices.
std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string> & texts, const Tokenizer & tok,
                                               int threads) {
    std::vector<std::vector<int32_t>> out(texts.size());
    EncodeOptions plain;
    plain.add_special_tokens = false;
    auto work = [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            std::vector<int32_t> ids = tok.encode(texts[i], plain);
            std::vector<int32_t> & doc = out[i];
            doc.reserve(ids.size() + 2);
            doc.push_back(tok.bos_id());
            doc.insert(doc.end(), ids.begin(), ids.end());
            doc.push_back(tok.eos_id());
        }
    };
    const size_t n = texts.size();
    const size_t t = std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(threads), n / 16 + 1));
    if (t == 1) {
        work(0, n);
        return out;
    }
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(t);
    for (size_t k = 0; k < t; ++k) {
        pool.emplace_back([&, k] {
            try {
                work(n * k / t, n * (k + 1) / t);
            } catch (...) {
                errors[k] = std::current_exception();
            }
        });
    }
    for (auto & th : pool) th.join();
    for (auto & e : errors) {
        if (e) std::rethrow_exception(e);
    }
    return out;
}

}  // namespace

ShardManifest tokenize_corpus(const fs::path & corpus_jsonl, const Tokenizer & tok, const fs::path & out_prefix,
                              const TokenizeOptions & options) {
    CT3_CHECK(options.shard_tokens > 0, ErrorKind::invalid_argument, "tokenize_corpus: shard_tokens must be > 0");
    CT3_CHECK(options.batch_documents > 0, ErrorKind::invalid_argument, "tokenize_corpus: batch_documents must be > 0");
    CT3_CHECK(tok.bos_id() >= 0 && tok.eos_id() >= 0, ErrorKind::invalid_argument,
              "tokenize_corpus: the tokenizer has no BOS/EOS ids (bos {}, eos {}); documents are framed by both",
              tok.bos_id(), tok.eos_id());
    CT3_CHECK(tok.vocab_size() > 0 && tok.vocab_size() <= 0xFFFFFFFFull, ErrorKind::invalid_argument,
              "tokenize_corpus: vocab size {} does not fit a token shard", tok.vocab_size());
    CT3_CHECK(out_prefix.has_filename(), ErrorKind::invalid_argument,
              "tokenize_corpus: output prefix '{}' must name a file prefix (e.g. data/train)", out_prefix.string());
    const fs::path dir = out_prefix.parent_path().empty() ? fs::path(".") : out_prefix.parent_path();
    std::error_code ec;
    fs::create_directories(dir, ec);
    CT3_CHECK(!ec, ErrorKind::io, "tokenize_corpus: cannot create folder '{}': {}", dir.string(), ec.message());
    const int threads = options.num_threads > 0 ? options.num_threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

    ShardManifest m;
    m.vocab_size = static_cast<uint32_t>(tok.vocab_size());
    m.bytes_per_token = shard_bytes_per_token(m.vocab_size);
    m.bos_id = tok.bos_id();
    m.eos_id = tok.eos_id();
    fs::path tok_file = options.tokenizer_file;
    if (tok_file.empty()) {
        if (const auto * sp = dynamic_cast<const SentencePieceTokenizer *>(&tok)) tok_file = sp->path();
    }
    if (!tok_file.empty()) {
        m.tokenizer_file = tok_file.string();
        m.tokenizer_sha256 = sha256_file(tok_file);
    }

    std::vector<int32_t> pending;  // tokens of the shard being filled
    auto flush = [&](bool final) {
        while (pending.size() >= options.shard_tokens || (final && !pending.empty())) {
            const size_t n = std::min<size_t>(pending.size(), options.shard_tokens);
            const fs::path shard = fmt::format("{}_{:03d}.bin", out_prefix.string(), m.shards.size());
            write_token_shard(shard, pending.data(), n, m.vocab_size);
            m.shards.push_back(shard);
            m.shard_tokens.push_back(n);
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
        }
    };
    std::vector<std::string> batch;
    auto encode_pending = [&] {
        for (auto & doc : encode_batch(batch, tok, threads)) {
            pending.insert(pending.end(), doc.begin(), doc.end());
            m.tokens += doc.size();
        }
        batch.clear();
        flush(false);
    };
    for_each_corpus_text(corpus_jsonl, [&](std::string && text) {
        if (text.empty()) {
            ++m.skipped_documents;
            return;
        }
        ++m.documents;
        m.utf8_bytes += text.size();
        batch.push_back(std::move(text));
        if (batch.size() >= options.batch_documents) encode_pending();
    });
    encode_pending();
    flush(true);

    const fs::path manifest = out_prefix.string() + ".json";
    kb::write_file_atomic(manifest, m.to_json(dir).dump(2) + "\n");
    logger("pretrain")
        ->info("tokenised {}: {} documents, {} tokens, {} bytes into {} shard(s) -> {}", corpus_jsonl.string(),
               m.documents, m.tokens, m.utf8_bytes, m.shards.size(), manifest.string());
    return m;
}

}  // namespace ct3::pretrain
