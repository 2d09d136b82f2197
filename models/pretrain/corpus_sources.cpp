#include "models/pretrain/corpus_sources.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kb/dataset_readers.h"
#include "kb/datasets.h"
#include "kb/json_records.h"
#include "kb/kb_files.h"
#include "models/close_names.h"
#include "models/error.h"

namespace ct3::pretrain {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string & string_field(const json & record, const char * name, const std::string & where) {
    const auto it = record.find(name);
    CT3_CHECK(it != record.end() && it->is_string(), ErrorKind::bad_format, "{}: field '{}' must be a string{}", where,
              name, it == record.end() ? " (it is missing)" : ", got " + std::string(it->type_name()));
    return it->get_ref<const std::string &>();
}

// MBPP code uses CRLF line ends; the corpus keeps one line-end convention.
std::string lf_lines(std::string text) {
    text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
    return text;
}

// The question and the worked solution, labelled so that the model sees where the answer starts.
std::string gsm8k_document(const json & record, const std::string & where) {
    return "Question: " + string_field(record, "question", where) + "\nAnswer: " + string_field(record, "answer", where);
}

// The task as a comment, the reference code, then its tests (setup code first when there is some):
// a small, runnable Python file. kb::mbpp_text leaves the code out (it builds eval-style prompts).
std::string mbpp_document(const json & record, const std::string & where) {
    std::string text = "# " + string_field(record, "text", where) + "\n" + lf_lines(string_field(record, "code", where));
    const std::string & setup = string_field(record, "test_setup_code", where);
    text += "\n\n";
    if (!setup.empty()) text += lf_lines(setup) + "\n";
    const auto tests = record.find("test_list");
    CT3_CHECK(tests != record.end() && tests->is_array(), ErrorKind::bad_format,
              "{}: field 'test_list' must be an array of strings", where);
    for (const auto & test : *tests) {
        CT3_CHECK(test.is_string(), ErrorKind::bad_format, "{}: field 'test_list' must be an array of strings", where);
        text += lf_lines(test.get<std::string>()) + "\n";
    }
    return text;
}

using Render = std::string (*)(const json & record, const std::string & where);

struct DataRootSet {
    const char * name;
    const char * path;  // relative to the data root
    const char * licence;
    Render render;
};

// PROVENANCE.md of the data root gives the licences.
const std::vector<DataRootSet> & data_root_sets() {
    static const std::vector<DataRootSet> sets = {
        {"gsm8k", "gsm8k/train.jsonl", "MIT", gsm8k_document},
        {"mawps", "llm_adapters/dataset/mawps/trainset.json", "ODC-By-1.0 (LLM-Adapters data); MAWPS terms",
         kb::mawps_text},
        {"math_data", "llm_adapters/math_data.json", "ODC-By-1.0 (LLM-Adapters data)", kb::math_data_text},
        {"mbpp", "mbpp/mbpp_train.jsonl", "CC-BY-4.0", mbpp_document},
        {"mbpp_prompt", "mbpp/mbpp_prompt.jsonl", "CC-BY-4.0", mbpp_document},
        {"python_code", "python_code/stdlib_functions.jsonl", "PSF-2.0", kb::python_code_text},
    };
    return sets;
}

CorpusSource data_root_source(const std::string & name, const fs::path & data_root) {
    const auto & sets = data_root_sets();
    const auto it = std::find_if(sets.begin(), sets.end(), [&](const DataRootSet & s) { return name == s.name; });
    if (it == sets.end()) {
        fail_hint(ErrorKind::invalid_argument, fmt::format("known: {}", fmt::join(corpus_datasets(), ", ")),
                  "corpus dataset '{}' is unknown{}", name, describe_close_names(name, corpus_datasets()));
    }
    const fs::path path = data_root / it->path;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
        fail_hint(ErrorKind::not_found, "pass the data root (the folder with gsm8k/, mbpp/, llm_adapters/, ...)",
                  "corpus dataset '{}': file '{}' not found", name, path.string());
    }
    kb::refuse_test_split(path);  // a replaced file must not smuggle an evaluation set in
    const Render render = it->render;
    CorpusSource source{it->name, it->licence, path.string(), {}};
    source.read = [path, render](const DocumentSink & sink, SourceStats &) {
        kb::for_each_json_record(path, [&](kb::JsonRecord && record) {
            std::string where = kb::record_location(path, record);
            CT3_CHECK(record.value.is_object(), ErrorKind::bad_format, "{}: record is a JSON {}, expected an object",
                      where, record.value.type_name());
            std::string text = render(record.value, where);
            sink({std::move(text), std::move(where)});
            return true;
        });
    };
    return source;
}

bool has_extension(const fs::path & path, const std::vector<std::string> & extensions) {
    const std::string name = path.filename().string();
    for (const auto & ext : extensions)
        if (name.size() >= ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) return true;
    return false;
}

CorpusSource text_root_source(const TextRoot & root, uint64_t max_bytes) {
    CT3_CHECK(!root.source.empty(), ErrorKind::invalid_argument, "text root '{}': the source name is empty",
              root.dir.string());
    CT3_CHECK(!root.extensions.empty(), ErrorKind::invalid_argument,
              "text root '{}' (source '{}'): no file extensions given (e.g. \".py\")", root.dir.string(), root.source);
    std::error_code ec;
    if (!fs::is_directory(root.dir, ec)) {
        fail(ErrorKind::not_found, "text root '{}' (source '{}') is not a directory", root.dir.string(), root.source);
    }
    kb::refuse_test_split(root.dir);  // a folder named like an evaluation file is refused by name
    // Every file is refused by name and sha256 like any other source, before the build writes anything.
    std::vector<fs::path> files = list_text_files(root);
    for (const fs::path & path : files) kb::refuse_test_split(path);
    CorpusSource source{root.source, root.licence, root.dir.string(), {}};
    source.read = [root, files = std::move(files), max_bytes](const DocumentSink & sink, SourceStats & stats) {
        for (const fs::path & path : files) {
            std::error_code size_ec;
            const uintmax_t size = fs::file_size(path, size_ec);
            CT3_CHECK(!size_ec, ErrorKind::io, "text root '{}': cannot stat '{}': {}", root.dir.string(),
                      path.string(), size_ec.message());
            if (size > max_bytes) {
                ++stats.skipped_too_large;
                continue;
            }
            std::string text = kb::read_whole_file(path, "text file");
            if (!is_utf8_text(text)) {
                ++stats.skipped_non_utf8;
                continue;
            }
            sink({std::move(text), path.lexically_relative(root.dir).generic_string()});
        }
    };
    return source;
}

}  // namespace

std::vector<std::string> corpus_datasets() {
    std::vector<std::string> names;
    for (const auto & set : data_root_sets()) names.push_back(set.name);
    return names;
}

bool is_utf8_text(const std::string & bytes) {
    const auto * p = reinterpret_cast<const unsigned char *>(bytes.data());
    const unsigned char * end = p + bytes.size();
    while (p < end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            if (c == 0) return false;
            ++p;
            continue;
        }
        int extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (end - p <= extra) return false;
        for (int i = 1; i <= extra; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;
        p += extra + 1;
    }
    return true;
}

std::vector<fs::path> list_text_files(const TextRoot & root) {
    const std::set<std::string> skip(root.skip_dirs.begin(), root.skip_dirs.end());
    std::vector<fs::path> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(root.dir, fs::directory_options::skip_permission_denied, ec), end;
    CT3_CHECK(!ec, ErrorKind::io, "text root '{}': cannot list the folder: {}", root.dir.string(), ec.message());
    for (; it != end; it.increment(ec)) {
        CT3_CHECK(!ec, ErrorKind::io, "text root '{}': cannot list the folder: {}", root.dir.string(), ec.message());
        const fs::path & path = it->path();
        if (it->is_directory(ec)) {
            if (skip.count(path.filename().string())) it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file(ec) && has_extension(path, root.extensions)) files.push_back(path);
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::vector<CorpusSource> resolve_corpus_sources(const CorpusOptions & options, const fs::path & data_root) {
    std::vector<CorpusSource> sources;
    for (const auto & name : options.datasets) sources.push_back(data_root_source(name, data_root));

    for (const TextRoot & root : options.text_roots) {
        sources.push_back(text_root_source(root, options.max_file_bytes));
    }

    for (const std::string & token : options.extra_datasets) {
        // resolve_dataset refuses evaluation files (by name and sha256) before anything else.
        const kb::DatasetSpec spec = kb::resolve_dataset(token, data_root, options.extra_template);
        CorpusSource source{spec.name, "user-supplied", spec.path.string(), {}};
        source.read = [spec](const DocumentSink & sink, SourceStats &) {
            kb::read_dataset(spec, [&](kb::Record && record) {
                sink({std::move(record.text), fmt::format("{} record {}", spec.path.string(), record.row)});
            });
        };
        sources.push_back(std::move(source));
    }

    std::set<std::string> names;
    for (const auto & source : sources) {
        if (!names.insert(source.name).second) {
            fail_hint(ErrorKind::invalid_argument, "give every text root and extra dataset its own source name",
                      "corpus source '{}' is named twice", source.name);
        }
    }
    return sources;
}

}  // namespace ct3::pretrain
