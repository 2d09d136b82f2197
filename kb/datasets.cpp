#include "kb/datasets.h"

#include <memory>
#include <system_error>

#include "kb/dataset_readers.h"
#include "kb/json_records.h"
#include "kb/text_template.h"
#include "models/close_names.h"
#include "models/error.h"
#include "models/log.h"

namespace ct3::kb {

namespace {

namespace fs = std::filesystem;

const char * kDataRootHint = "pass --data_root or set CT3_DATA_DIR to the folder that holds gsm8k/, mbpp/, llm_adapters/, ...";

bool is_file(const fs::path & path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec);
}

bool has_json_extension(const fs::path & path) { return path.extension() == ".json" || path.extension() == ".jsonl"; }

std::string join(const std::vector<std::string> & names, const char * suffix = "") {
    std::string out;
    for (const auto & name : names) out += (out.empty() ? "" : ", ") + name + suffix;
    return out;
}

std::vector<std::string> user_supplied_datasets() {
    std::vector<std::string> names;
    for (const auto & reader : dataset_readers())
        if (!reader.default_path) names.push_back(reader.name);
    return names;
}

std::vector<std::string> all_reader_names() {
    std::vector<std::string> names;
    for (const auto & reader : dataset_readers()) names.push_back(reader.name);
    return names;
}

[[noreturn]] void fail_unknown(const std::string & token, const std::string & name) {
    fail_hint(ErrorKind::invalid_argument,
              fmt::format("known datasets: {} (under the data root); {} (user-supplied, as NAME=PATH); or a .json/.jsonl "
                          "file with --template '{{question}} {{answer}}'",
                          join(known_datasets()), join(user_supplied_datasets(), "=PATH")),
              "unknown dataset '{}' in --datasets{}{}", name, name == token ? "" : " (token '" + token + "')",
              describe_close_names(name, all_reader_names()));
}

// The file of a NAME=PATH token: PATH as given (relative to the working directory), or, when that
// does not exist and PATH is relative, PATH under the data root (so `mbpp=mbpp/mbpp_prompt.jsonl`
// works from anywhere).
fs::path locate_user_file(const std::string & token, const fs::path & given, const fs::path & data_root) {
    if (is_file(given)) return given;
    if (given.is_relative() && !data_root.empty() && is_file(data_root / given)) return data_root / given;
    fail_hint(ErrorKind::not_found, kDataRootHint, "dataset '{}': file '{}' does not exist (also looked under the data root '{}')",
              token, given.string(), data_root.string());
}

void check_json_file(const std::string & token, const fs::path & path) {
    CT3_CHECK(has_json_extension(path), ErrorKind::invalid_argument,
              "dataset '{}': '{}' must be a .json (JSON array or JSON Lines) or .jsonl file; convert other formats "
              "(parquet, CSV) to JSON Lines first",
              token, path.string());
}

}  // namespace

std::vector<std::string> known_datasets() {
    std::vector<std::string> names;
    for (const auto & reader : dataset_readers())
        if (reader.default_path) names.push_back(reader.name);
    return names;
}

std::vector<std::string> available_datasets(const fs::path & data_root) {
    std::vector<std::string> names;
    for (const auto & reader : dataset_readers())
        if (reader.default_path && is_file(data_root / reader.default_path)) names.push_back(reader.name);
    return names;
}

DatasetSpec resolve_dataset(const std::string & token, const fs::path & data_root, const std::string & user_template) {
    CT3_CHECK(!token.empty(), ErrorKind::invalid_argument, "--datasets: empty dataset name");
    DatasetSpec spec;
    const size_t eq = token.find('=');
    const DatasetReader * named = eq == std::string::npos ? nullptr : find_dataset_reader(token.substr(0, eq));
    // "cqoa=x.jsonl" (no '/' before the '=') is a misspelt NAME=PATH rather than a missing file.
    const bool misspelt_name = eq != std::string::npos && token.find('/') > eq;

    if (named) {  // NAME=PATH: a built-in reader on another file
        const std::string file = token.substr(eq + 1);
        CT3_CHECK(!file.empty(), ErrorKind::invalid_argument, "dataset '{}': the path after '=' is empty", token);
        spec.name = spec.reader = named->name;
        spec.path = locate_user_file(token, file, data_root);
    } else if (const DatasetReader * reader = find_dataset_reader(token)) {  // a known name
        if (!reader->default_path) {
            fail_hint(ErrorKind::invalid_argument,
                      fmt::format("pass {}=PATH to a JSON or JSONL file with records {}", token, reader->schema),
                      "dataset '{}' is not included in the data root; it must be supplied by the user", token);
        }
        spec.name = spec.reader = reader->name;
        spec.path = data_root / reader->default_path;
        if (!is_file(spec.path)) {
            fail_hint(ErrorKind::not_found, kDataRootHint, "dataset '{}': file '{}' not found (data root '{}')", token,
                      spec.path.string(), data_root.string());
        }
    } else if (is_file(token) || (has_json_extension(token) && !misspelt_name)) {  // PATH, with the user template
        if (!is_file(token)) {
            fail_hint(ErrorKind::not_found, kDataRootHint, "dataset file '{}' does not exist (data root '{}')", token,
                      data_root.string());
        }
        spec.path = token;
        spec.name = spec.path.stem().string();
        spec.reader = "template";
        spec.text_template = user_template;
    } else {
        fail_unknown(token, eq == std::string::npos ? token : token.substr(0, eq));
    }

    // An evaluation file is refused before anything else is said about it.
    spec.sha256 = refuse_test_split(spec.path);
    check_json_file(token, spec.path);
    if (spec.reader == "template") {
        if (user_template.empty()) {
            fail_hint(ErrorKind::invalid_argument, "--template '{question} {answer}'",
                      "dataset file '{}' needs a text template that says how a record becomes a text", token);
        }
        TextTemplate check(user_template);  // a malformed template fails here, before any work
    }
    logger("kb")->debug("dataset '{}': reader '{}' on {}", spec.name, spec.reader, spec.path.string());
    return spec;
}

void read_dataset(const DatasetSpec & spec, const std::function<void(Record &&)> & sink, int64_t limit) {
    CT3_CHECK(limit >= 0, ErrorKind::invalid_argument, "dataset '{}': limit must be >= 0 (got {})", spec.name, limit);
    const DatasetReader * reader = nullptr;
    std::unique_ptr<TextTemplate> text_template;
    if (spec.reader == "template") {
        CT3_CHECK(!spec.text_template.empty(), ErrorKind::invalid_argument,
                  "dataset '{}': the template reader needs a text template (--template '{{question}} {{answer}}')",
                  spec.name);
        text_template = std::make_unique<TextTemplate>(spec.text_template);
    } else {
        reader = find_dataset_reader(spec.reader);
        CT3_CHECK(reader != nullptr, ErrorKind::invalid_argument, "dataset '{}': unknown reader '{}'{}", spec.name,
                  spec.reader, describe_close_names(spec.reader, all_reader_names()));
    }

    // Empty texts are passed on like any other: rows keep their source numbering, and the builder
    // drops empty texts (and duplicates) when it assembles the KB.
    int64_t count = 0;
    for_each_json_record(spec.path, [&](JsonRecord && record) {
        const std::string where = record_location(spec.path, record);
        Record out;
        out.row = record.row;
        if (text_template) {
            out.text = text_template->render(record.value, where);
        } else {
            CT3_CHECK(record.value.is_object(), ErrorKind::bad_format,
                      "{}: record is a JSON {}, expected an object (reader '{}')", where, record.value.type_name(),
                      spec.reader);
            out.text = reader->text(record.value, where);
        }
        sink(std::move(out));
        return limit == 0 || ++count < limit;
    });
}

}  // namespace ct3::kb
