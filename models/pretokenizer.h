// Pre-tokenization for Hugging Face tokenizer.json byte-level BPE: the pieces of text that BPE then
// merges within. Implements the `pre_tokenizer` components that GPT-2, Llama-3, Qwen2 and SmolLM use
// (ByteLevel, Split, Digits, Sequence) with the semantics of HF `tokenizers`, plus the GPT-2 byte <-> unicode
// map shared with the ByteLevel decoder. Regexes run on PCRE2 (UTF + UCP, JIT when available).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/tokenizer_json.h"

namespace ct3 {

// One pre-tokenizer step. Steps are immutable after construction and safe to share between threads.
class PreTokenizer {
public:
    virtual ~PreTokenizer() = default;

    // Rewrites `pieces` in place: splits each piece further and/or maps its bytes. Empty pieces are dropped.
    virtual void apply(std::vector<std::string> & pieces) const = 0;

    // Builds a step from a `pre_tokenizer` node; throws ct3::Error naming `where` for unsupported types.
    static std::unique_ptr<PreTokenizer> from_json(const nlohmann::json & node, const JsonWhere & where);
};

// GPT-2 bytes_to_unicode: the UTF-8 text of the printable stand-in for each byte ("Ġ" for ' ').
const std::string & byte_to_unicode(uint8_t byte);

// Maps every byte of `text` to its stand-in.
std::string byte_level_encode(std::string_view text);

// Appends the bytes that the byte-level `token` stands for. Returns false (appending nothing) when some
// character of the token is not a byte stand-in, as HF's ByteLevel decoder then keeps the token as-is.
bool byte_level_decode(std::string_view token, std::string & out);

// Length in bytes of the UTF-8 character starting at text[pos]; 1 for an invalid or truncated sequence, so
// that hostile input is walked one byte at a time instead of being read past its end.
size_t utf8_char_length(std::string_view text, size_t pos);

}  // namespace ct3
