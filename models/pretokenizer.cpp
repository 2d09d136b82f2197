#include "models/pretokenizer.h"

#include <algorithm>
#include <array>
#include <utility>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "models/error.h"

namespace ct3 {

//
// UTF-8 and the GPT-2 byte map
//

size_t utf8_char_length(std::string_view text, size_t pos) {
    const auto lead = static_cast<uint8_t>(text[pos]);
    size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || pos + n > text.size()) return 1;
    for (size_t i = 1; i < n; ++i) {
        if ((static_cast<uint8_t>(text[pos + i]) & 0xC0) != 0x80) return 1;
    }
    return n;
}

namespace {

std::string utf8_encode(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted to U+0100..
// so that every byte has a visible, non-whitespace character (all stand-ins are below U+0800).
struct ByteMap {
    std::array<std::string, 256> to_unicode;
    std::array<int16_t, 0x800> from_codepoint;  // -1 where the code point is not a stand-in

    ByteMap() {
        from_codepoint.fill(-1);
        uint32_t shifted = 0;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t cp = printable ? b : 256 + shifted++;
            to_unicode[b] = utf8_encode(cp);
            from_codepoint[cp] = static_cast<int16_t>(b);
        }
    }
};

const ByteMap & byte_map() {
    static const ByteMap map;
    return map;
}

}  // namespace

const std::string & byte_to_unicode(uint8_t byte) { return byte_map().to_unicode[byte]; }

std::string byte_level_encode(std::string_view text) {
    const ByteMap & map = byte_map();
    std::string out;
    out.reserve(text.size() * 2);
    for (char c : text) out += map.to_unicode[static_cast<uint8_t>(c)];
    return out;
}

bool byte_level_decode(std::string_view token, std::string & out) {
    const ByteMap & map = byte_map();
    const size_t start = out.size();
    for (size_t pos = 0; pos < token.size();) {
        const auto b0 = static_cast<uint8_t>(token[pos]);
        uint32_t cp = 0x800;  // anything not decodable below lands outside the table
        if (b0 < 0x80) {
            cp = b0;
            pos += 1;
        } else if ((b0 >> 5) == 0x6 && utf8_char_length(token, pos) == 2) {
            cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(token[pos + 1]) & 0x3Fu);
            pos += 2;
        }
        if (cp >= 0x800 || map.from_codepoint[cp] < 0) {
            out.resize(start);
            return false;
        }
        out += static_cast<char>(map.from_codepoint[cp]);
    }
    return true;
}

//
// Regex splitting (PCRE2)
//

namespace {

// Match data is per thread: patterns are shared between threads, match data may not be.
struct ThreadMatchData {
    pcre2_match_data * data = pcre2_match_data_create(4, nullptr);
    ~ThreadMatchData() { pcre2_match_data_free(data); }
};

class Regex {
public:
    Regex(const std::string & pattern, bool literal, const JsonWhere & where) {
        // PCRE2_MATCH_INVALID_UTF: text is not validated upstream; invalid bytes simply never match.
        uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
        int error = 0;
        PCRE2_SIZE offset = 0;
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error, &offset,
                              nullptr);
        if (code_ == nullptr) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(error, message, sizeof(message));
            fail(ErrorKind::bad_format, "{} regex '{}' does not compile at offset {}: {}", json_at(where), pattern,
                 offset, reinterpret_cast<const char *>(message));
        }
        pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
    }
    ~Regex() { pcre2_code_free(code_); }
    Regex(const Regex &) = delete;
    Regex & operator=(const Regex &) = delete;

    // Every non-overlapping match [start, end) of `text`, left to right (empty matches included, as in HF).
    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>> & out) const {
        thread_local ThreadMatchData match;
        CT3_CHECK(match.data != nullptr, ErrorKind::internal, "out of memory allocating PCRE2 match data");
        const auto * subject = reinterpret_cast<PCRE2_SPTR>(text.empty() ? "" : text.data());
        size_t pos = 0;
        while (pos <= text.size()) {
            int rc = pcre2_match(code_, subject, text.size(), pos, 0, match.data, nullptr);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
                // The JIT's small machine stack ran out on some pathological input: the interpreter keeps its
                // backtracking state on the heap, so retry there.
                rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_JIT, match.data, nullptr);
            }
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR message[256];
                pcre2_get_error_message(rc, message, sizeof(message));
                fail(ErrorKind::invalid_argument, "pre-tokenizer regex failed on a {}-byte text at byte {}: {}",
                     text.size(), pos, reinterpret_cast<const char *>(message));
            }
            const PCRE2_SIZE * ov = pcre2_get_ovector_pointer(match.data);
            out.emplace_back(ov[0], ov[1]);
            if (ov[1] > ov[0]) {
                pos = ov[1];
            } else if (ov[1] < text.size()) {
                pos = ov[1] + utf8_char_length(text, ov[1]);  // step over one character after an empty match
            } else {
                break;
            }
        }
    }

private:
    pcre2_code * code_ = nullptr;
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct Segment {
    size_t start, end;
    bool match;
};

// Splits every piece at the matches of `regex`, then groups segments the way HF's SplitDelimiterBehavior does.
void split_pieces(std::vector<std::string> & pieces, const Regex & regex, SplitBehavior behavior, bool invert) {
    std::vector<std::string> result;
    result.reserve(pieces.size() * 4);
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Segment> segments, grouped;
    for (const std::string & piece : pieces) {
        matches.clear();
        segments.clear();
        grouped.clear();
        regex.find_all(piece, matches);
        size_t prev = 0;
        for (auto [start, end] : matches) {
            if (start > prev) segments.push_back({prev, start, invert});
            segments.push_back({start, end, !invert});
            prev = end;
        }
        if (prev < piece.size()) segments.push_back({prev, piece.size(), invert});

        bool previous_match = false;
        switch (behavior) {
        case SplitBehavior::isolated: grouped = segments; break;
        case SplitBehavior::removed:
            for (const Segment & s : segments) {
                if (!s.match) grouped.push_back(s);
            }
            break;
        case SplitBehavior::merged_with_previous:
            for (const Segment & s : segments) {
                if (s.match && !previous_match && !grouped.empty()) grouped.back().end = s.end;
                else grouped.push_back(s);
                previous_match = s.match;
            }
            break;
        case SplitBehavior::merged_with_next:
            for (size_t i = segments.size(); i-- > 0;) {
                const Segment & s = segments[i];
                if (s.match && !previous_match && !grouped.empty()) grouped.back().start = s.start;
                else grouped.push_back(s);
                previous_match = s.match;
            }
            std::reverse(grouped.begin(), grouped.end());
            break;
        case SplitBehavior::contiguous:
            for (const Segment & s : segments) {
                if (s.match == previous_match && !grouped.empty()) grouped.back().end = s.end;
                else grouped.push_back(s);
                previous_match = s.match;
            }
            break;
        }
        for (const Segment & s : grouped) {
            if (s.end > s.start) result.emplace_back(piece, s.start, s.end - s.start);
        }
    }
    pieces = std::move(result);
}

SplitBehavior parse_behavior(const std::string & name, const JsonWhere & where) {
    if (name == "Removed") return SplitBehavior::removed;
    if (name == "Isolated") return SplitBehavior::isolated;
    if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
    if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
    if (name == "Contiguous") return SplitBehavior::contiguous;
    fail(ErrorKind::unsupported,
         "{} '{}' is not supported (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)",
         json_at(where), name);
}

//
// The steps
//

const char * const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class SplitStep : public PreTokenizer {
public:
    SplitStep(const nlohmann::json & node, const JsonWhere & where) {
        const nlohmann::json & pattern = json_require(node, "pattern", where);
        const JsonWhere pattern_at = where.field("pattern");
        CT3_CHECK(pattern.is_object() && pattern.size() == 1, ErrorKind::bad_format,
                  "{} is {} (expected {{\"Regex\": ...}} or {{\"String\": ...}})", json_at(pattern_at), pattern.dump());
        const bool literal = pattern.contains("String");
        CT3_CHECK(literal || pattern.contains("Regex"), ErrorKind::unsupported,
                  "{} has kind '{}' (supported: Regex, String)", json_at(pattern_at), pattern.begin().key());
        const std::string kind = literal ? "String" : "Regex";
        regex_ = std::make_unique<Regex>(json_string(pattern.at(kind), pattern_at.field(kind)), literal,
                                         pattern_at.field(kind));
        behavior_ = parse_behavior(json_string(json_require(node, "behavior", where), where.field("behavior")),
                                   where.field("behavior"));
        invert_ = json_bool_or(node, "invert", false, where);
    }

    void apply(std::vector<std::string> & pieces) const override {
        split_pieces(pieces, *regex_, behavior_, invert_);
    }

private:
    std::unique_ptr<Regex> regex_;
    SplitBehavior behavior_ = SplitBehavior::isolated;
    bool invert_ = false;
};

class ByteLevelStep : public PreTokenizer {
public:
    ByteLevelStep(const nlohmann::json & node, const JsonWhere & where) {
        add_prefix_space_ = json_bool_or(node, "add_prefix_space", true, where);
        if (json_bool_or(node, "use_regex", true, where)) regex_ = std::make_unique<Regex>(kGpt2Pattern, false, where);
    }

    void apply(std::vector<std::string> & pieces) const override {
        if (add_prefix_space_) {
            // HF prepends the space to every piece that reaches this step, not only to the first one.
            for (std::string & piece : pieces) {
                if (piece.empty() || piece[0] != ' ') piece.insert(piece.begin(), ' ');
            }
        }
        if (regex_) split_pieces(pieces, *regex_, SplitBehavior::isolated, false);
        for (std::string & piece : pieces) piece = byte_level_encode(piece);
    }

private:
    bool add_prefix_space_ = true;
    std::unique_ptr<Regex> regex_;
};

class DigitsStep : public PreTokenizer {
public:
    DigitsStep(const nlohmann::json & node, const JsonWhere & where)
        : regex_(R"(\p{N})", false, where),
          behavior_(json_bool_or(node, "individual_digits", false, where) ? SplitBehavior::isolated
                                                                          : SplitBehavior::contiguous) {}

    void apply(std::vector<std::string> & pieces) const override { split_pieces(pieces, regex_, behavior_, false); }

private:
    Regex regex_;
    SplitBehavior behavior_;
};

class SequenceStep : public PreTokenizer {
public:
    SequenceStep(const nlohmann::json & node, const JsonWhere & where) {
        const nlohmann::json & list = json_require(node, "pretokenizers", where);
        const JsonWhere list_at = where.field("pretokenizers");
        CT3_CHECK(list.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)", json_at(list_at),
                  list.type_name());
        for (size_t i = 0; i < list.size(); ++i) steps_.push_back(PreTokenizer::from_json(list[i], list_at.index(i)));
    }

    void apply(std::vector<std::string> & pieces) const override {
        for (const auto & step : steps_) step->apply(pieces);
    }

private:
    std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const nlohmann::json & node, const JsonWhere & where) {
    const std::string type = json_type(node, where);
    if (type == "ByteLevel") return std::make_unique<ByteLevelStep>(node, where);
    if (type == "Split") return std::make_unique<SplitStep>(node, where);
    if (type == "Digits") return std::make_unique<DigitsStep>(node, where);
    if (type == "Sequence") return std::make_unique<SequenceStep>(node, where);
    fail(ErrorKind::unsupported, "{} '{}' is not supported (supported: ByteLevel, Split, Sequence, Digits)",
         json_at(where.field("type")), type);
}

}  // namespace ct3
