// The pretraining corpus builder: the train splits of the data root plus text/code folders (the
// Python standard library and its documentation from Debian packages), decontaminated against every
// evaluation set, deduplicated, split into train and held-out, and written as JSON Lines.
//
// Output in `out_dir` (each file written to a temp name, fsynced and renamed into place):
//   train.jsonl, held_out.jsonl  one document per line: {"source": "...", "text": "..."}
//   corpus.json                  per source {documents, bytes, dropped_*, licence, origin}, totals,
//                                the options and the sha256 of both JSONL files
// The same options give byte-identical files: sources are read in a fixed order (folders in sorted
// path order) and the held-out split is a hash of (seed, document text), so a document stays on
// its side when sources are added or removed.
//
// Dropped documents: any overlap with an evaluation set (exact or n-gram, see kb/test_overlap.h),
// duplicates of an earlier document after normalisation, and documents with no words. Folder files
// that are not UTF-8 or are larger than max_file_bytes are skipped and counted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace ct3::pretrain {

// A folder of text or code files; one file = one document.
struct TextRoot {
    std::filesystem::path dir;
    std::vector<std::string> extensions;  // file name endings that are read (".py"; ".txt" matches ".rst.txt")
    std::string source;                   // the source name in the corpus ("python-stdlib")
    std::string licence;                  // SPDX id or a short description ("PSF-2.0")
    std::vector<std::string> skip_dirs;   // directory names skipped at any depth ("test", "__pycache__")
};

// /usr/lib/python3.11: *.py without test suites, idlelib, site/dist-packages (third-party code under
// other licences) and __pycache__. Source "python-stdlib", PSF-2.0.
TextRoot python_stdlib_root(const std::filesystem::path & dir = "/usr/lib/python3.11");
// The reStructuredText sources of the Python documentation (python3.x-doc: .../html/_sources),
// *.txt. Source "python-docs", PSF-2.0.
TextRoot python_docs_root(const std::filesystem::path & sources_dir);

// The train splits of the data root the corpus knows, in corpus order: gsm8k, mawps, math_data,
// mbpp, mbpp_prompt, python_code.
std::vector<std::string> corpus_datasets();

struct CorpusOptions {
    std::filesystem::path data_root;           // train splits and evaluation sets; empty = kb::default_data_root()
    std::vector<std::string> datasets = corpus_datasets();  // names from corpus_datasets(); {} = none
    std::vector<TextRoot> text_roots;
    // More JSON/JSONL sources, as kb --datasets tokens: NAME=PATH (a kb reader on another file) or
    // PATH (rendered with extra_template). Evaluation files are refused (kb::refuse_test_split).
    std::vector<std::string> extra_datasets;
    std::string extra_template;                // e.g. "{question}\n{answer}"
    double held_out_fraction = 0.005;          // in [0, 1)
    uint64_t seed = 0;                         // of the held-out split
    int ngram = 13;                            // n of the n-gram overlap check
    uint64_t max_file_bytes = uint64_t(1) << 20;  // folder files above this are skipped
    int log_overlaps = 5;                      // dropped overlaps logged per source (the rest are counted)
};

struct SourceStats {
    std::string name;
    std::string licence;
    std::string origin;             // file or folder it was read from
    int64_t documents = 0;          // written (train + held-out)
    int64_t bytes = 0;              // of the written texts
    int64_t held_out_documents = 0;
    int64_t held_out_bytes = 0;
    int64_t dropped_overlap = 0;    // overlapping an evaluation set
    std::map<std::string, int64_t> overlap_by_test_set;  // dropped_overlap by the evaluation set matched
    int64_t dropped_duplicate = 0;  // same normalised text as an earlier document
    int64_t dropped_empty = 0;      // no words
    int64_t skipped_non_utf8 = 0;   // folder files only
    int64_t skipped_too_large = 0;  // folder files only
};

struct CorpusStats {
    std::vector<SourceStats> sources;  // in corpus order
    SourceStats total;                 // name "total"
    std::string train_sha256, held_out_sha256;
    std::filesystem::path train_path, held_out_path, manifest_path;
    size_t test_sets = 0;              // evaluation sets checked against
    size_t test_documents = 0;
    double seconds = 0;                // wall time (not written to corpus.json, which must be reproducible)
};

// Builds the corpus into `out_dir` (created when missing; earlier outputs are replaced). Throws
// ct3::Error naming the source, file or option on failure: an unknown dataset name, a missing file,
// an evaluation split given as a source, no evaluation set under the data root, a malformed record.
CorpusStats build_corpus(const CorpusOptions & options, const std::filesystem::path & out_dir);

// True when a document goes to held_out.jsonl: hash_bytes(text, seed) mapped to [0, 1) is below
// `fraction`.
bool is_held_out(const std::string & text, uint64_t seed, double fraction);

}  // namespace ct3::pretrain
