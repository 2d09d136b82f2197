// Unicode helpers for tokenizer normalizers, without ICU: UTF-8 coding, category tests (through
// PCRE2's Unicode tables) and per-code-point accent stripping / lower-casing (through tables generated
// by scripts/gen_unicode_tables.py from Python's unicodedata).
#pragma once

#include <string>
#include <string_view>

namespace ct3::unicode {

// Decodes UTF-8. Each byte of an invalid or truncated sequence (and each encoded surrogate or
// overlong form) becomes U+FFFD, so hostile bytes never reach later stages.
std::u32string decode_utf8(std::string_view text);
std::string encode_utf8(std::u32string_view text);
void append_utf8(std::string & out, char32_t cp);

bool is_punctuation(char32_t cp);     // general category P* (Pc Pd Ps Pe Pi Pf Po)
bool is_other(char32_t cp);           // general category C* (Cc Cf Cs Co Cn)
bool is_white_space(char32_t cp);     // the White_Space property (what Rust's char::is_whitespace tests)
bool is_cjk_ideograph(char32_t cp);   // the CJK blocks that BERT surrounds with spaces

// Appends NFD(cp) without its non-spacing marks (Mn): "é" -> "e", U+0301 -> "", Hangul -> jamo.
void append_accent_stripped(std::u32string & out, char32_t cp);
// Appends the full lower-case mapping of one code point ("İ" -> "i̇"), as Rust's char::to_lowercase.
void append_lowercase(std::u32string & out, char32_t cp);

// The Unicode version of the generated tables (for diagnostics).
const char * tables_version();

}  // namespace ct3::unicode
