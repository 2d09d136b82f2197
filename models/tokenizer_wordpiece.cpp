// The WordPiece algorithm (see tokenizer_wordpiece.h); file loading lives in tokenizer_wordpiece_load.cpp.
#include "models/tokenizer_wordpiece.h"

#include <algorithm>

#include "models/error.h"
#include "models/unicode_text.h"

namespace ct3 {

namespace {

// Token ids beyond this are refused: a hostile tokenizer.json must not make us allocate gigabytes.
constexpr int64_t kMaxVocab = int64_t(1) << 24;

void replace_all(std::string & s, const std::string & from, const std::string & to) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
}

// The WordPiece decoder's `cleanup` (applied to each token, with its leading space) and transformers'
// clean_up_tokenization (applied to the joined string) share these rules, in this order.
void cleanup_tokenization(std::string & s) {
    static const std::pair<const char *, const char *> rules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (const auto & [from, to] : rules) replace_all(s, from, to);
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, WordPieceConfig config, std::string source)
    : config_(std::move(config)), source_(std::move(source)), id_to_token_(std::move(vocab)) {
    CT3_CHECK(!id_to_token_.empty(), ErrorKind::bad_format, "WordPiece vocabulary {} is empty", source_);
    CT3_CHECK(static_cast<int64_t>(id_to_token_.size()) <= kMaxVocab, ErrorKind::bad_format,
              "WordPiece vocabulary {} has {} tokens (at most {} supported)", source_, id_to_token_.size(), kMaxVocab);
    CT3_CHECK(config_.max_input_chars_per_word > 0, ErrorKind::invalid_argument,
              "WordPiece max_input_chars_per_word of {} must be > 0", source_);
    token_to_id_.reserve(id_to_token_.size());
    for (size_t i = 0; i < id_to_token_.size(); ++i) {
        if (!id_to_token_[i].empty()) token_to_id_[id_to_token_[i]] = static_cast<int32_t>(i);  // later lines win
    }
    unk_id_ = optional_id(config_.unk_token);
    CT3_CHECK(unk_id_ >= 0, ErrorKind::bad_format, "WordPiece vocabulary {} has no unknown token '{}'", source_,
              config_.unk_token);
    cls_id_ = optional_id(config_.cls_token);
    sep_id_ = optional_id(config_.sep_token);
    pad_id_ = optional_id(config_.pad_token);
    mask_id_ = optional_id(config_.mask_token);
    bos_id_ = optional_id(config_.bos_token);
    eos_id_ = optional_id(config_.eos_token);

    if (config_.added_tokens.empty()) {
        for (const std::string * t : {&config_.pad_token, &config_.unk_token, &config_.cls_token, &config_.sep_token,
                                      &config_.mask_token}) {
            if (const int32_t id = optional_id(*t); id >= 0) added_.push_back({*t, id, true});
        }
    } else {
        for (const AddedToken & t : config_.added_tokens) {
            CT3_CHECK(!t.content.empty(), ErrorKind::bad_format, "added token {} of {} has empty content", t.id,
                      source_);
            CT3_CHECK(t.id >= 0 && t.id < kMaxVocab, ErrorKind::bad_format,
                      "added token '{}' of {} has id {} out of range", t.content, source_, t.id);
            if (static_cast<size_t>(t.id) >= id_to_token_.size()) id_to_token_.resize(static_cast<size_t>(t.id) + 1);
            if (id_to_token_[t.id].empty()) id_to_token_[t.id] = t.content;
            token_to_id_.emplace(t.content, t.id);
            added_.push_back(t);
        }
    }
    // Longest first: at one position the longest added token wins (HF's leftmost-longest matching).
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken & a, const AddedToken & b) { return a.content.size() > b.content.size(); });
    special_.assign(id_to_token_.size(), 0);
    for (const AddedToken & t : added_) special_[t.id] = t.special ? 1 : 0;

    if (config_.prefix_ids.empty() && config_.suffix_ids.empty()) {
        if (cls_id_ >= 0) config_.prefix_ids.push_back(cls_id_);
        if (sep_id_ >= 0) config_.suffix_ids.push_back(sep_id_);
    }
    for (const auto * list : {&config_.prefix_ids, &config_.suffix_ids}) {
        for (int32_t id : *list) {
            CT3_CHECK(id >= 0 && static_cast<size_t>(id) < id_to_token_.size(), ErrorKind::bad_format,
                      "post-processor special id {} of {} is out of range", id, source_);
        }
    }
    strip_accents_ = config_.strip_accents.value_or(config_.lowercase);
}

int32_t WordPieceTokenizer::optional_id(const std::string & token) const {
    if (token.empty()) return -1;
    const auto it = token_to_id_.find(token);
    return it == token_to_id_.end() ? -1 : it->second;
}

// BertNormalizer: clean text, isolate CJK ideographs, strip accents (NFD minus Mn), lower-case, in
// HF's order (a CJK compatibility ideograph is isolated first, then decomposed).
std::u32string WordPieceTokenizer::normalize(const std::string & text) const {
    std::u32string s = unicode::decode_utf8(text);
    std::u32string out;
    out.reserve(s.size() + 8);
    for (char32_t cp : s) {
        if (config_.clean_text) {
            if (cp == 0 || cp == 0xFFFD) continue;
            if (cp != '\t' && cp != '\n' && cp != '\r' && unicode::is_other(cp)) continue;
            if (unicode::is_white_space(cp)) cp = ' ';
        }
        if (config_.handle_chinese_chars && unicode::is_cjk_ideograph(cp)) {
            out += U' ';
            out += cp;
            out += U' ';
        } else {
            out += cp;
        }
    }
    if (strip_accents_) {
        s.clear();
        for (char32_t cp : out) unicode::append_accent_stripped(s, cp);
        out.swap(s);
    }
    if (config_.lowercase) {
        s.clear();
        for (char32_t cp : out) unicode::append_lowercase(s, cp);
        out.swap(s);
    }
    return out;
}

std::vector<std::string> WordPieceTokenizer::pre_tokenize(const std::string & text) const {
    // BertPreTokenizer: split on whitespace, and every punctuation character is a word of its own.
    const std::u32string normalized = normalize(text);
    std::vector<std::string> words;
    std::string word;
    auto flush = [&] {
        if (!word.empty()) words.push_back(std::move(word));
        word.clear();
    };
    for (char32_t cp : normalized) {
        if (unicode::is_white_space(cp)) {
            flush();
        } else if (unicode::is_punctuation(cp)) {
            flush();
            unicode::append_utf8(word, cp);
            flush();
        } else {
            unicode::append_utf8(word, cp);
        }
    }
    flush();
    return words;
}

void WordPieceTokenizer::tokenize_word(const std::string & word, size_t n_chars, std::vector<int32_t> & ids) const {
    if (n_chars > config_.max_input_chars_per_word) {
        ids.push_back(unk_id_);
        return;
    }
    // Greedy longest-match-first over character boundaries; one unmatched rest makes the word [UNK].
    std::vector<size_t> bounds;  // byte offsets of character starts, plus the end
    for (size_t i = 0; i < word.size(); ++i) {
        if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) bounds.push_back(i);
    }
    bounds.push_back(word.size());
    const size_t first = ids.size();
    std::string candidate;
    for (size_t start = 0; start + 1 < bounds.size();) {
        int32_t found = -1;
        size_t end = bounds.size() - 1;
        for (; end > start; --end) {
            candidate.assign(start > 0 ? config_.continuing_prefix : std::string());
            candidate.append(word, bounds[start], bounds[end] - bounds[start]);
            if (const auto it = token_to_id_.find(candidate); it != token_to_id_.end()) {
                found = it->second;
                break;
            }
        }
        if (found < 0) {
            ids.resize(first);
            ids.push_back(unk_id_);
            return;
        }
        ids.push_back(found);
        start = end;
    }
}

void WordPieceTokenizer::tokenize_words(const std::string & segment, std::vector<int32_t> & ids) const {
    if (segment.empty()) return;
    for (const std::string & word : pre_tokenize(segment)) {
        size_t n_chars = 0;
        for (unsigned char c : word) n_chars += (c & 0xC0) != 0x80;
        tokenize_word(word, n_chars, ids);
    }
}

std::vector<int32_t> WordPieceTokenizer::encode(const std::string & text, const EncodeOptions & options) const {
    // Added tokens match verbatim in the raw text; only the text between them is normalized.
    std::vector<int32_t> body;
    size_t segment_start = 0;
    for (size_t pos = 0; pos < text.size();) {
        const AddedToken * match = nullptr;
        for (const AddedToken & t : added_) {
            if (text.compare(pos, t.content.size(), t.content) == 0) {
                match = &t;
                break;
            }
        }
        if (match == nullptr) {
            ++pos;
            continue;
        }
        tokenize_words(text.substr(segment_start, pos - segment_start), body);
        body.push_back(match->id);
        pos += match->content.size();
        segment_start = pos;
    }
    tokenize_words(text.substr(segment_start), body);

    const std::vector<int32_t> no_ids;
    const auto & prefix = options.add_special_tokens ? config_.prefix_ids : no_ids;
    const auto & suffix = options.add_special_tokens ? config_.suffix_ids : no_ids;
    if (options.max_length > 0) {
        const size_t specials = prefix.size() + suffix.size();
        const size_t budget = options.max_length > specials ? options.max_length - specials : 0;
        if (body.size() > budget) body.resize(budget);  // the closing [SEP] survives truncation
    }
    std::vector<int32_t> out;
    out.reserve(prefix.size() + body.size() + suffix.size());
    out.insert(out.end(), prefix.begin(), prefix.end());
    out.insert(out.end(), body.begin(), body.end());
    out.insert(out.end(), suffix.begin(), suffix.end());
    if (options.max_length > 0 && out.size() > options.max_length) out.resize(options.max_length);
    return out;
}

std::string WordPieceTokenizer::decode(const std::vector<int32_t> & ids, bool skip_special) const {
    std::string out;
    size_t emitted = 0;
    const std::string & prefix = config_.continuing_prefix;
    for (const int32_t id : ids) {
        CT3_CHECK(id >= 0 && static_cast<size_t>(id) < id_to_token_.size(), ErrorKind::invalid_argument,
                  "token id {} is out of range for WordPiece vocabulary {} ({} tokens)", id, source_,
                  id_to_token_.size());
        const std::string & token = id_to_token_[id];
        if (token.empty() || (skip_special && special_[id])) continue;  // holes have no text
        // The WordPiece decoder: "##x" glues to the previous token, anything else gets a space.
        std::string piece;
        if (emitted > 0 && !prefix.empty() && token.compare(0, prefix.size(), prefix) == 0) {
            piece = token.substr(prefix.size());
        } else {
            piece = emitted > 0 ? " " + token : token;
        }
        if (config_.decoder_cleanup) cleanup_tokenization(piece);
        out += piece;
        ++emitted;
    }
    if (config_.clean_up_tokenization_spaces) cleanup_tokenization(out);
    return out;
}

std::string WordPieceTokenizer::id_to_piece(int32_t id) const {
    CT3_CHECK(id >= 0 && static_cast<size_t>(id) < id_to_token_.size(), ErrorKind::invalid_argument,
              "token id {} is out of range for WordPiece vocabulary {} ({} tokens)", id, source_, id_to_token_.size());
    const std::string & token = id_to_token_[id];
    if (special_[id] || token.empty()) return {};
    const std::string & prefix = config_.continuing_prefix;
    if (!prefix.empty() && token.compare(0, prefix.size(), prefix) == 0) return token.substr(prefix.size());
    return " " + token;
}

std::optional<int32_t> WordPieceTokenizer::piece_to_id(const std::string & piece) const {
    const int32_t id = optional_id(piece);
    if (id < 0) return std::nullopt;
    return id;
}

bool WordPieceTokenizer::is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id] != 0;
}

}  // namespace ct3
