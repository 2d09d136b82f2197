#include "models/unicode_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "models/error.h"

namespace ct3::unicode {

namespace {

struct CodePointMapping {
    uint32_t code_point;
    const char * utf8;
};

#include "models/unicode_tables.inc"

constexpr char32_t kReplacement = 0xFFFD;

template <size_t N>
const char * find_mapping(const CodePointMapping (&table)[N], char32_t cp) {
    const auto * it = std::lower_bound(std::begin(table), std::end(table), cp,
                                       [](const CodePointMapping & m, char32_t c) { return m.code_point < c; });
    return it != std::end(table) && it->code_point == cp ? it->utf8 : nullptr;
}

// One compiled "one code point of class X" pattern. pcre2_code is immutable after compilation and
// safe to share between threads; each thread gets its own match data.
class CategoryPattern {
public:
    explicit CategoryPattern(const char * pattern) {
        int error = 0;
        PCRE2_SIZE offset = 0;
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
        CT3_ASSERT(code_ != nullptr);
    }
    ~CategoryPattern() { pcre2_code_free(code_); }
    CategoryPattern(const CategoryPattern &) = delete;
    CategoryPattern & operator=(const CategoryPattern &) = delete;

    bool matches(char32_t cp) const {
        thread_local std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
            pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
        std::string subject;
        append_utf8(subject, cp);
        // The subject is our own valid UTF-8: skip PCRE2's re-validation.
        const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                                   PCRE2_NO_UTF_CHECK, data.get(), nullptr);
        return rc > 0;
    }

private:
    pcre2_code * code_ = nullptr;
};

bool is_surrogate(char32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }

}  // namespace

const char * tables_version() { return CT3_UNICODE_TABLES_VERSION; }

void append_utf8(std::string & out, char32_t cp) {
    if (cp > 0x10FFFF || is_surrogate(cp)) cp = kReplacement;
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string encode_utf8(std::u32string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char32_t cp : text) append_utf8(out, cp);
    return out;
}

std::u32string decode_utf8(std::string_view text) {
    std::u32string out;
    out.reserve(text.size());
    const auto * s = reinterpret_cast<const unsigned char *>(text.data());
    const size_t n = text.size();
    for (size_t i = 0; i < n;) {
        const unsigned char b = s[i];
        size_t len = 0;
        char32_t cp = 0, min = 0;
        if (b < 0x80) {
            out += b;
            ++i;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        }
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) {
            ok = (s[i + k] & 0xC0) == 0x80;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (ok && cp >= min && cp <= 0x10FFFF && !is_surrogate(cp)) {
            out += cp;
            i += len;
        } else {
            out += kReplacement;  // resynchronise on the next byte
            ++i;
        }
    }
    return out;
}

bool is_punctuation(char32_t cp) {
    static const CategoryPattern pattern("\\p{P}");
    // BERT counts every ASCII non-alphanumeric symbol as punctuation ("$", "+", "^" are not P*).
    if (cp < 0x80) {
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
    }
    return pattern.matches(cp);
}

bool is_other(char32_t cp) {
    static const CategoryPattern pattern("\\p{C}");
    if (cp < 0x80) return cp < 0x20 || cp == 0x7F;
    if (is_surrogate(cp) || cp > 0x10FFFF) return true;  // Cs; PCRE2 cannot even see these in UTF mode
    return pattern.matches(cp);
}

bool is_white_space(char32_t cp) {
    switch (cp) {
        case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
        case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
            return true;
        default:
            return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool is_cjk_ideograph(char32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

void append_accent_stripped(std::u32string & out, char32_t cp) {
    if (cp < 0xC0) {  // nothing below U+00C0 decomposes or is a non-spacing mark
        out += cp;
        return;
    }
    if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable: the algorithmic canonical decomposition
        const char32_t s = cp - 0xAC00;
        out += static_cast<char32_t>(0x1100 + s / 588);
        out += static_cast<char32_t>(0x1161 + (s % 588) / 28);
        if (s % 28 != 0) out += static_cast<char32_t>(0x11A7 + s % 28);
        return;
    }
    if (const char * mapped = find_mapping(kStripAccents, cp)) {
        out += decode_utf8(mapped);
    } else {
        out += cp;
    }
}

void append_lowercase(std::u32string & out, char32_t cp) {
    if (cp < 0x80) {
        out += (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return;
    }
    if (const char * mapped = find_mapping(kLowercase, cp)) {
        out += decode_utf8(mapped);
    } else {
        out += cp;
    }
}

}  // namespace ct3::unicode
