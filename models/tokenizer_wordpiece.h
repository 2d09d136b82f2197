// WordPiece tokenizer (BERT, MiniLM, bge, e5; MPNet with <s>/</s> specials): the algorithm of HF
// BertTokenizerFast — BertNormalizer, BertPreTokenizer, greedy longest-match-first WordPiece, the
// [CLS] ... [SEP] template and the WordPiece decoder.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/tokenizer.h"

namespace ct3 {

// A token matched verbatim in the raw text before normalization (HF "added_tokens" with
// normalized=false); `special` ones are dropped by decode(skip_special=true).
struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool special = true;
};

struct WordPieceConfig {
    // BertNormalizer
    bool clean_text = true;                // drop control chars and U+FFFD, whitespace -> ' '
    bool handle_chinese_chars = true;      // surround CJK ideographs with spaces
    bool lowercase = true;
    std::optional<bool> strip_accents;     // unset: follows `lowercase` (HF semantics)
    // WordPiece model
    std::string unk_token = "[UNK]";
    std::string continuing_prefix = "##";
    size_t max_input_chars_per_word = 100;
    // Specials and template. Empty prefix/suffix: derived from cls_token / sep_token.
    std::string cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]", mask_token = "[MASK]";
    std::string bos_token, eos_token;      // empty: none (BERT has neither; MPNet uses <s>, </s>)
    std::vector<AddedToken> added_tokens;  // empty: the five tokens above that are in the vocabulary
    std::vector<int32_t> prefix_ids, suffix_ids;
    // Decoding: the WordPiece decoder's per-token cleanup (" ," -> ","), and transformers'
    // clean_up_tokenization_spaces on the joined text ("don ' t" -> "don't"), which transformers 5
    // applies only when tokenizer_config.json sets it (golden fixtures: transformers 5.17).
    bool decoder_cleanup = true;
    bool clean_up_tokenization_spaces = false;
    size_t model_max_length = 0;           // 0 = unknown / unlimited
};

class WordPieceTokenizer : public Tokenizer {
public:
    // vocab[i] is the token of id i (empty strings are holes). Throws ct3::Error when the unknown
    // token or a configured special token is missing from the vocabulary.
    WordPieceTokenizer(std::vector<std::string> vocab, WordPieceConfig config, std::string source = "vocabulary");

    // [CLS] words [SEP] when add_special_tokens; max_length truncates the words and keeps [SEP].
    std::vector<int32_t> encode(const std::string & text, const EncodeOptions & options = {}) const override;
    std::string decode(const std::vector<int32_t> & ids, bool skip_special = true) const override;
    // "##ing" -> "ing", "hello" -> " hello" (a word start carries its separating space), specials -> "".
    std::string id_to_piece(int32_t id) const override;
    std::optional<int32_t> piece_to_id(const std::string & piece) const override;
    size_t vocab_size() const override { return id_to_token_.size(); }

    int32_t bos_id() const override { return bos_id_; }
    int32_t eos_id() const override { return eos_id_; }
    int32_t pad_id() const override { return pad_id_; }
    int32_t unk_id() const override { return unk_id_; }
    bool is_special(int32_t id) const override;

    int32_t cls_id() const { return cls_id_; }
    int32_t sep_id() const { return sep_id_; }
    int32_t mask_id() const { return mask_id_; }
    const WordPieceConfig & config() const { return config_; }

    // The words after normalization and pre-tokenization (special tokens excluded); for tests.
    std::vector<std::string> pre_tokenize(const std::string & text) const;

private:
    std::u32string normalize(const std::string & text) const;
    void tokenize_words(const std::string & segment, std::vector<int32_t> & ids) const;
    void tokenize_word(const std::string & word, size_t n_chars, std::vector<int32_t> & ids) const;
    int32_t optional_id(const std::string & token) const;

    WordPieceConfig config_;
    std::string source_;
    std::vector<std::string> id_to_token_;
    std::unordered_map<std::string, int32_t> token_to_id_;
    std::vector<AddedToken> added_;  // sorted longest first, for leftmost-longest matching
    std::vector<uint8_t> special_;
    bool strip_accents_ = true;
    int32_t unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, mask_id_ = -1, bos_id_ = -1, eos_id_ = -1;
};

// Loads a WordPiece tokenizer from vocab.txt, a tokenizer.json whose model is WordPiece, or a folder
// holding either; tokenizer.json, tokenizer_config.json and special_tokens_map.json beside it supply
// the settings. Throws ct3::Error naming the file and the field at fault.
std::unique_ptr<WordPieceTokenizer> load_wordpiece_tokenizer(const std::filesystem::path & path);

}  // namespace ct3
