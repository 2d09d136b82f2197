// load_tokenizer(): picks the tokenizer implementation from the files of a model folder or file.
#include "models/tokenizer.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/tokenizer_sentencepiece.h"
#include "models/tokenizer_wordpiece.h"

namespace fs = std::filesystem;

namespace ct3 {

// Byte-level BPE from an HF tokenizer.json (models/tokenizer_bpe.{h,cpp}, written separately).
// Declared here rather than included so that this file does not depend on that header's arrival.
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path & tokenizer_json);

namespace {

// model.type of an HF tokenizer.json ("BPE", "WordPiece", "Unigram", ...).
std::string tokenizer_json_type(const fs::path & file) {
    std::ifstream in(file, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open tokenizer file '{}'", file.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "'{}' is not valid JSON: {}", file.string(), e.what());
    }
    CT3_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), ErrorKind::bad_format,
              "'{}' has no 'model' object (expected an HF tokenizer.json)", file.string());
    const auto & model = j["model"];
    if (model.contains("type") && model["type"].is_string()) return model["type"].get<std::string>();
    // Old files omit the type; the fields tell the model apart.
    if (model.contains("merges")) return "BPE";
    if (model.contains("continuing_subword_prefix") || model.contains("max_input_chars_per_word")) return "WordPiece";
    fail(ErrorKind::bad_format, "'{}': model.type is missing and the model fields do not identify it", file.string());
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const fs::path & file) {
    const std::string type = tokenizer_json_type(file);
    if (type == "BPE") return load_bpe_tokenizer(file);
    if (type == "WordPiece") return load_wordpiece_tokenizer(file);
    fail_hint(ErrorKind::unsupported, "supported: BPE and WordPiece tokenizer.json, SentencePiece .model",
              "'{}': tokenizer model type '{}' is not supported", file.string(), type);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path & path) {
    std::error_code ec;
    CT3_CHECK(fs::exists(path, ec), ErrorKind::not_found, "tokenizer '{}' not found", path.string());
    if (!fs::is_directory(path, ec)) {
        const auto ext = path.extension();
        if (ext == ".model") return std::make_unique<SentencePieceTokenizer>(path);
        if (ext == ".json") return load_tokenizer_json(path);
        if (ext == ".txt") return load_wordpiece_tokenizer(path);
        fail_hint(ErrorKind::unsupported, "pass a model folder, tokenizer.model, tokenizer.json or vocab.txt",
                  "cannot tell the tokenizer kind of '{}' from its name", path.string());
    }
    // tokenizer.model first: Llama folders carry both it and a tokenizer.json, and the SentencePiece
    // model is the reference for them.
    if (fs::is_regular_file(path / "tokenizer.model", ec)) {
        return std::make_unique<SentencePieceTokenizer>(path / "tokenizer.model");
    }
    if (fs::is_regular_file(path / "tokenizer.json", ec)) return load_tokenizer_json(path / "tokenizer.json");
    if (fs::is_regular_file(path / "vocab.txt", ec)) return load_wordpiece_tokenizer(path / "vocab.txt");
    // A lone *.model (llama2.c style, e.g. tok512.model).
    fs::path only_model;
    size_t n_models = 0;
    for (const auto & entry : fs::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".model" && entry.is_regular_file(ec)) {
            only_model = entry.path();
            ++n_models;
        }
    }
    if (n_models == 1) return std::make_unique<SentencePieceTokenizer>(only_model);
    fail_hint(ErrorKind::not_found, "expected tokenizer.model, tokenizer.json, vocab.txt or a single *.model",
              "no tokenizer in folder '{}'{}", path.string(),
              n_models > 1 ? " (several *.model files; pass one explicitly)" : "");
}

}  // namespace ct3
