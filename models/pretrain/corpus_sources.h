// The sources of the pretraining corpus (see corpus.h), each turned into a stream of documents:
// train splits of the data root (one record = one document), text folders (one file = one
// document) and user JSON/JSONL files read with the KB's dataset readers.
//
// All sources are resolved before any is read, so an unknown name, a missing file or an evaluation
// split fails the build before work is done.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "models/pretrain/corpus.h"

namespace ct3::pretrain {

struct Document {
    std::string text;
    std::string where;  // file and record, for logs ("gsm8k/train.jsonl line 12 (record 11)")
};
using DocumentSink = std::function<void(Document &&)>;

struct CorpusSource {
    std::string name;
    std::string licence;
    std::string origin;  // file or folder
    // Streams the documents in a fixed order; counts skipped files into `stats`.
    std::function<void(const DocumentSink &, SourceStats & stats)> read;
};

// The sources of `options` in corpus order: options.datasets, then text_roots, then extra_datasets.
// Throws ct3::Error (invalid_argument / not_found) naming the source; source names must be unique.
std::vector<CorpusSource> resolve_corpus_sources(const CorpusOptions & options, const std::filesystem::path & data_root);

// The files of a text root that match its extensions, skipped directories left out, sorted by path.
std::vector<std::filesystem::path> list_text_files(const TextRoot & root);

// Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF) without NUL bytes:
// what a text file of the corpus must be.
bool is_utf8_text(const std::string & bytes);

}  // namespace ct3::pretrain
