// The `model` section of a Hugging Face tokenizer.json of type BPE: vocabulary, ranked merges, and the
// merge loop that turns one pre-token into ids. Used by tokenizer_bpe.cpp; knows nothing of added tokens,
// pre-tokenizers or templates.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/tokenizer_json.h"

namespace ct3 {

class BpeModel {
public:
    // Parses `model` (the node at `where`); throws ct3::Error naming the file and field for bad content.
    BpeModel(const nlohmann::json & model, const JsonWhere & where);

    // Appends the ids of one pre-token (already byte-level mapped when the pipeline has a ByteLevel step).
    // Characters missing from the vocabulary become <0xXX> byte tokens (byte_fallback), else the unk token,
    // else they are dropped, as in HF. Thread-safe.
    void encode_word(const std::string & word, std::vector<int32_t> & ids) const;

    std::optional<int32_t> token_to_id(const std::string & token) const;
    const std::string * id_to_token(int32_t id) const;  // nullptr when no vocabulary entry has this id
    int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
    int32_t unk_id() const { return unk_id_; }

private:
    struct Merge {
        int32_t rank;
        int32_t new_id;
    };
    static uint64_t pair_key(int32_t left, int32_t right) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
    }
    void parse_merges(const nlohmann::json & merges, const JsonWhere & where);
    void merge_word(const std::string & word, std::vector<int32_t> & ids) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> has_id_;
    std::unordered_map<uint64_t, Merge> merges_;
    int32_t unk_id_ = -1;
    bool byte_fallback_ = false;
    bool fuse_unk_ = false;
    bool ignore_merges_ = false;
    int32_t byte_ids_[256];  // id of "<0xXX>" per byte (-1 when absent), for byte_fallback

    // Cache of merged words: text -> ids. Bounded; cleared wholesale when full (cheap, and the hot words of a
    // corpus come right back).
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace ct3
