// Tokenizer interface shared by SentencePiece (.model), byte-level BPE (tokenizer.json) and
// WordPiece (vocab.txt). Implementations live in tokenizer_<kind>.{h,cpp}; load_tokenizer() picks
// one from the files present in a model folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ct3 {

struct EncodeOptions {
    bool add_special_tokens = true;  // BOS for Llama-family, [CLS] ... [SEP] for BERT-family
    size_t max_length = 0;           // 0 = no truncation; otherwise truncate (keeping the closing special)
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    virtual std::vector<int32_t> encode(const std::string & text, const EncodeOptions & options = {}) const = 0;
    // Decodes ids to text; special/control tokens are dropped when skip_special is true.
    virtual std::string decode(const std::vector<int32_t> & ids, bool skip_special = true) const = 0;
    // The text of one token as it contributes to a decoded stream (for streaming output).
    virtual std::string id_to_piece(int32_t id) const = 0;
    virtual std::optional<int32_t> piece_to_id(const std::string & piece) const = 0;
    virtual size_t vocab_size() const = 0;

    // Special ids; -1 when the tokenizer has none.
    virtual int32_t bos_id() const = 0;
    virtual int32_t eos_id() const = 0;
    virtual int32_t pad_id() const = 0;
    virtual int32_t unk_id() const = 0;
    virtual bool is_special(int32_t id) const = 0;
};

// Loads the tokenizer of a model folder or file:
//   *.model / tokenizer.model        -> SentencePiece
//   tokenizer.json (model.type BPE)  -> byte-level BPE
//   vocab.txt / tokenizer.json (WordPiece) -> WordPiece
// Throws ct3::Error naming the path and what was expected when nothing usable is found.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path & path);

}  // namespace ct3
