// Byte-level BPE tokenizers from a Hugging Face tokenizer.json (GPT-2, Llama-3, Qwen2, SmolLM, ...).
//
// Supported tokenizer.json components (anything else throws ct3::Error kind unsupported, naming the file and
// the JSON path):
//   model           BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, byte_fallback, unk_token,
//                   fuse_unk (continuing_subword_prefix / end_of_word_suffix / dropout must be unset)
//   added_tokens    matched first, longest match wins; lstrip / rstrip / single_word honoured (ASCII whitespace
//                   and word characters)
//   normalizer      null or NFC (NFC is applied as identity: inputs are expected to be NFC already)
//   pre_tokenizer   ByteLevel, Split (Regex or String pattern, every behavior, invert), Digits, Sequence
//   post_processor  null, ByteLevel (no-op on ids), TemplateProcessing (single), RobertaProcessing,
//                   BertProcessing, Sequence of these
//   decoder         null or ByteLevel
// bos/eos/pad come from tokenizer_config.json beside tokenizer.json when present (a key set to null means
// "none"); otherwise bos/eos are guessed from well-known added tokens (<|begin_of_text|>, <|end_of_text|>,
// <|endoftext|>, <|im_end|>, <s>, </s>).
//
// The tokenizer is immutable after loading except for an internal, mutex-protected word cache, so one
// instance may encode and decode from several threads at once.
#pragma once

#include <filesystem>
#include <memory>

#include "models/tokenizer.h"

namespace ct3 {

// Loads `tokenizer_json` (a file path). Throws ct3::Error naming the file for unreadable, malformed or
// unsupported content.
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path & tokenizer_json);

}  // namespace ct3
