#include "kb/test_overlap.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kb/json_records.h"
#include "models/error.h"
#include "models/log.h"

namespace ct3::kb {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;
// Base of the rolling n-gram hash (odd, so powers never vanish modulo 2^64).
constexpr uint64_t kRollBase = 0x9e3779b97f4a7c15ull;

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

// Bytes of the separator starting at p (0 when p starts or continues a word). Unicode spaces, dashes
// and typographic quotes (U+2000..U+207F, U+00A0) separate like their ASCII forms, so "Janet’s" and
// "Janet's" normalise alike; other non-ASCII bytes are word bytes (letters of other scripts).
size_t separator_length(const unsigned char * p, const unsigned char * end) {
    const unsigned char c = *p;
    if (c < 0x80) {
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        return alnum ? 0 : 1;
    }
    if (c == 0xC2 && end - p >= 2 && p[1] == 0xA0) return 2;
    if (c == 0xE2 && end - p >= 3 && (p[1] == 0x80 || p[1] == 0x81)) return 3;
    return 0;
}

unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c + 32) : c; }

struct Word {
    uint64_t hash;
    uint32_t begin, end;  // byte range in the original text
    bool number;          // digits only
};

// The words of `text` with their hashes. `out` is reused between calls to avoid reallocations.
void split_words(std::string_view text, std::vector<Word> & out) {
    out.clear();
    const auto * base = reinterpret_cast<const unsigned char *>(text.data());
    const unsigned char * p = base;
    const unsigned char * end = base + text.size();
    while (p < end) {
        size_t sep;
        while (p < end && (sep = separator_length(p, end)) > 0) p += sep;
        if (p == end) break;
        const unsigned char * start = p;
        uint64_t h = kFnvOffset;
        bool number = true;
        while (p < end && separator_length(p, end) == 0) {
            number = number && *p >= '0' && *p <= '9';
            h = (h ^ lower(*p)) * kFnvPrime;
            ++p;
        }
        out.push_back({mix64(h), uint32_t(start - base), uint32_t(p - base), number});
    }
}

uint64_t document_key(const std::vector<Word> & words) {
    uint64_t h = 0x243f6a8885a308d3ull;
    for (const Word & w : words) h = mix64(h + w.hash);
    return mix64(h ^ words.size());
}

// The normalised text of words [first, last).
std::string join_words(std::string_view text, const std::vector<Word> & words, size_t first, size_t last) {
    std::string out;
    for (size_t i = first; i < last; ++i) {
        if (i > first) out += ' ';
        for (uint32_t b = words[i].begin; b < words[i].end; ++b) out += char(lower(static_cast<unsigned char>(text[b])));
    }
    return out;
}

// Whether the n-gram [first, last) can identify an evaluation item: it has a word that is not a
// number and at least `min_distinct` different words. "0 1 2 ... 12", a list of primes or a zero
// table occur in test items and everywhere else alike (n is small: quadratic is fine).
bool is_informative(const std::vector<Word> & words, size_t first, size_t last, size_t min_distinct) {
    size_t distinct = 0;
    bool has_text = false;
    for (size_t i = first; i < last; ++i) {
        has_text = has_text || !words[i].number;
        size_t j = first;
        while (j < i && words[j].hash != words[i].hash) ++j;
        distinct += j == i;
    }
    return has_text && distinct >= min_distinct;
}

// Calls fn(hash, first_word) for every n-gram of `words` (rolling polynomial hash, O(1) per step).
template <typename Fn>
void for_each_shingle(const std::vector<Word> & words, int n, Fn && fn) {
    const size_t count = words.size();
    if (count < size_t(n)) return;
    uint64_t top = 1;  // kRollBase^(n-1)
    for (int i = 1; i < n; ++i) top *= kRollBase;
    uint64_t h = 0;
    for (int i = 0; i < n; ++i) h = h * kRollBase + words[i].hash;
    for (size_t first = 0;; ++first) {
        if (!fn(mix64(h), first)) return;
        if (first + n >= count) return;
        h = (h - words[first].hash * top) * kRollBase + words[first + n].hash;
    }
}

// The text of one evaluation record: its fields joined by newlines (arrays of strings element by
// element). Every field listed must be present.
std::string record_text(const json & record, const EvalSetSpec & spec, const std::string & where,
                        std::vector<std::string> & fields) {
    CT3_CHECK(record.is_object(), ErrorKind::bad_format, "{}: evaluation record is a JSON {}, expected an object", where,
              record.type_name());
    std::string text;
    fields.clear();
    for (const char * name : spec.fields) {
        const auto it = record.find(name);
        CT3_CHECK(it != record.end(), ErrorKind::bad_format, "{}: evaluation record has no field '{}'", where, name);
        std::string value;
        if (it->is_string()) {
            value = it->get<std::string>();
        } else if (it->is_array()) {
            for (const auto & item : *it) {
                CT3_CHECK(item.is_string(), ErrorKind::bad_format, "{}: field '{}' must hold strings, found a {}", where,
                          name, item.type_name());
                value += (value.empty() ? "" : "\n") + item.get<std::string>();
            }
        } else {
            fail(ErrorKind::bad_format, "{}: field '{}' must be a string or an array of strings, got {}", where, name,
                 it->type_name());
        }
        text += (text.empty() ? "" : "\n") + value;
        fields.push_back(std::move(value));
    }
    return text;
}

}  // namespace

uint64_t hash_bytes(std::string_view bytes, uint64_t seed) {
    uint64_t h = kFnvOffset ^ mix64(seed);
    for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
    return mix64(h ^ bytes.size());
}

std::string normalise_text(std::string_view text) {
    std::vector<Word> words;
    split_words(text, words);
    return join_words(text, words, 0, words.size());
}

const std::vector<EvalSetSpec> & evaluation_sets() {
    static const std::vector<EvalSetSpec> sets = {
        {"gsm8k/test.jsonl", {"question", "answer"}},
        {"llm_adapters/dataset/mawps/test.json", {"instruction", "output"}},
        {"llm_adapters/dataset/mathqa/test.json", {"instruction", "output"}},
        {"llm_adapters/dataset/gsm8k/test.json", {"instruction", "output"}},
        {"llm_adapters/dataset/SVAMP/test.json", {"instruction", "output"}},
        {"llm_adapters/dataset/AQuA/test.json", {"instruction", "output"}},
        {"mbpp/mbpp_test.jsonl", {"text", "code", "test_list"}},
        {"humaneval/HumanEval.jsonl", {"prompt", "canonical_solution", "test"}},
    };
    return sets;
}

TestSetIndex::TestSetIndex(int ngram) : ngram_(ngram) {
    CT3_CHECK(ngram >= 1, ErrorKind::invalid_argument, "test-set overlap: n-gram length must be >= 1 (got {})", ngram);
    // n-grams of fewer than ceil(n/3) different words (5 of 13) are not indexed, see is_informative.
    min_distinct_ = std::max<size_t>(1, (size_t(ngram) + 2) / 3);
}

uint32_t TestSetIndex::set_id(const std::string & name, const fs::path & path) {
    for (size_t i = 0; i < sets_.size(); ++i)
        if (sets_[i].name == name) return uint32_t(i);
    sets_.push_back({name, path, 0});
    return uint32_t(sets_.size() - 1);
}

size_t TestSetIndex::load_data_root(const fs::path & data_root) {
    auto log = logger("kb");
    size_t loaded = 0;
    std::vector<std::string> fields;
    std::vector<std::string> missing;
    for (const EvalSetSpec & spec : evaluation_sets()) {
        const fs::path path = data_root / spec.path;
        std::error_code ec;
        if (!fs::is_regular_file(path, ec)) {
            missing.push_back(spec.path);
            continue;
        }
        for_each_json_record(path, [&](JsonRecord && record) {
            const std::string text = record_text(record.value, spec, record_location(path, record), fields);
            add_document(text, spec.path, record.row, fields);
            return true;
        });
        sets_[set_id(spec.path, path)].path = path;
        ++loaded;
    }
    if (!missing.empty())
        log->warn("test-set overlap: {} of {} evaluation sets not found under '{}', so not checked: {}", missing.size(),
                  evaluation_sets().size(), data_root.string(), fmt::format("{}", fmt::join(missing, ", ")));
    log->info("test-set overlap: {} evaluation sets, {} records, {} distinct {}-grams", loaded, refs_.size(),
              shingles_.size(), ngram_);
    return loaded;
}

void TestSetIndex::add_exact(std::string_view text, uint32_t ref) {
    std::vector<Word> words;
    split_words(text, words);
    if (!words.empty()) documents_.emplace(document_key(words), ref);
}

void TestSetIndex::add_document(std::string_view text, const std::string & test_set, int64_t row,
                                const std::vector<std::string> & fields) {
    const uint32_t set = set_id(test_set, {});
    const uint32_t ref = uint32_t(refs_.size());
    refs_.push_back({set, row});
    ++sets_[set].documents;

    std::vector<Word> words;
    split_words(text, words);
    if (!words.empty()) documents_.emplace(document_key(words), ref);
    for (const std::string & field : fields) add_exact(field, ref);
    for_each_shingle(words, ngram_, [&](uint64_t hash, size_t first) {
        if (is_informative(words, first, first + ngram_, min_distinct_)) shingles_.emplace(hash, ref);
        return true;
    });
}

Overlap TestSetIndex::check(std::string_view doc) const {
    thread_local std::vector<Word> words;
    split_words(doc, words);
    Overlap out;
    out.words = words.size();
    out.key = document_key(words);
    auto describe = [&](uint32_t ref) {
        out.test_set = sets_[refs_[ref].set].name;
        out.test_row = refs_[ref].row;
    };
    if (words.empty()) return out;
    if (const auto it = documents_.find(out.key); it != documents_.end()) {
        out.exact = true;
        out.match = join_words(doc, words, 0, std::min(words.size(), size_t(ngram_)));
        describe(it->second);
    }
    for_each_shingle(words, ngram_, [&](uint64_t hash, size_t first) {
        const auto it = shingles_.find(hash);
        if (it == shingles_.end()) return true;
        out.ngram = true;
        out.match = join_words(doc, words, first, first + ngram_);
        describe(it->second);
        return false;
    });
    return out;
}

}  // namespace ct3::kb
