// Test-set overlap detection, used by the KB builder (kb/build_inputs.h) and the pretraining corpus
// (models/pretrain/corpus.h): a KB or corpus that contains an evaluation item (or a long piece of one)
// makes every score measured on that item meaningless (TTT retrieval would hand the model the test
// question with its answer), so every text is checked against the evaluation sets of the data root
// before it is kept.
//
// Normalisation: ASCII letters are lower-cased and text is split into words at every byte that is not
// an ASCII letter or digit (Unicode spaces, dashes and quotes, U+2000..U+207F and U+00A0, split too;
// other non-ASCII bytes stay inside words). So whitespace, punctuation and case differences never
// hide a match. Two checks, as in GPT-3's decontamination:
//   exact  the normalised document equals a normalised evaluation record (or one of its fields)
//   ngram  the document shares one n-gram of words (n = 13 by default) with an evaluation record
// Documents shorter than n words are checked only exactly. Evaluation n-grams made of numbers only
// or of fewer than ceil(n/3) different words ("0 1 2 ... 12", "0 0 0 ... 0") are not indexed: they
// match number tables in any code or prose, not test items.
// Hashes are 64-bit; a false match needs a 64-bit collision.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ct3::kb {

// A stable 64-bit hash of bytes (FNV-1a, seeded, with a splitmix64 finaliser). Same value on every
// platform and run, so corpus splits (models/pretrain/corpus.h) that depend on it are reproducible.
uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0);

// The normalised words of `text` joined by single spaces ("Hello,  World!" -> "hello world").
std::string normalise_text(std::string_view text);

// One evaluation file of the data root and the fields that make up one record's text.
struct EvalSetSpec {
    const char * path;                 // relative to the data root
    std::vector<const char *> fields;  // string fields, or arrays of strings (joined by newlines)
};
// gsm8k/test.jsonl, llm_adapters/dataset/{mawps,mathqa,gsm8k,SVAMP,AQuA}/test.json, mbpp/mbpp_test.jsonl,
// humaneval/HumanEval.jsonl.
const std::vector<EvalSetSpec> & evaluation_sets();

struct Overlap {
    bool exact = false;       // the whole normalised document equals an evaluation record or field
    bool ngram = false;       // the document shares an n-gram with an evaluation record
    std::string match;        // the first matching n-gram (normalised), or the start of the exact match
    std::string test_set;     // where the match comes from ("gsm8k/test.jsonl", or add_document's name)
    int64_t test_row = -1;    // 0-based record of that set (-1 when unknown)
    uint64_t key = 0;         // hash of the normalised document (equal keys = duplicate documents)
    size_t words = 0;         // number of normalised words in the document

    bool found() const { return exact || ngram; }
};

struct TestSetInfo {
    std::string name;  // e.g. "gsm8k/test.jsonl"
    std::filesystem::path path;
    int64_t documents = 0;
};

class TestSetIndex {
public:
    // `ngram` >= 1 (13 by default; throws ct3::Error invalid_argument otherwise).
    explicit TestSetIndex(int ngram = 13);

    // Adds every evaluation set of evaluation_sets() present under `data_root`; absent ones are
    // skipped and named in one warning. Returns how many sets were loaded. Throws ct3::Error naming file,
    // record and field on malformed records.
    size_t load_data_root(const std::filesystem::path & data_root);

    // Adds one evaluation document (all of its n-grams and its exact form). `fields`, when given,
    // are also matched exactly on their own (e.g. a question without its answer).
    void add_document(std::string_view text, const std::string & test_set = "user", int64_t row = -1,
                      const std::vector<std::string> & fields = {});

    // Looks `doc` up. Thread-safe for concurrent calls while nothing is added.
    Overlap check(std::string_view doc) const;

    int ngram() const { return ngram_; }
    size_t documents() const { return refs_.size(); }
    size_t shingles() const { return shingles_.size(); }
    const std::vector<TestSetInfo> & sets() const { return sets_; }

private:
    struct Ref {
        uint32_t set;
        int64_t row;
    };
    uint32_t set_id(const std::string & name, const std::filesystem::path & path);
    void add_exact(std::string_view text, uint32_t ref);

    int ngram_;
    size_t min_distinct_ = 1;  // fewest different words of an indexed n-gram
    std::vector<TestSetInfo> sets_;
    std::vector<Ref> refs_;
    std::unordered_map<uint64_t, uint32_t> shingles_;   // n-gram hash -> first record holding it
    std::unordered_map<uint64_t, uint32_t> documents_;  // normalised-document hash -> record
};

}  // namespace ct3::kb
