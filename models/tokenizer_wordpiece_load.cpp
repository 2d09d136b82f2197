// Loading a WordPiece tokenizer from HF files: vocab.txt, tokenizer.json, tokenizer_config.json and
// special_tokens_map.json. Settings are layered like BertTokenizerFast: defaults, then tokenizer.json
// (normalizer, model, added tokens, post-processor, decoder), then special_tokens_map.json, then
// tokenizer_config.json, whose do_lower_case / strip_accents / tokenize_chinese_chars override the
// tokenizer.json normalizer when present.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"
#include "models/tokenizer_wordpiece.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ct3 {

namespace {

constexpr int64_t kMaxTokenId = int64_t(1) << 24;

std::string read_text(const fs::path & file) {
    std::ifstream in(file, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open tokenizer file '{}'", file.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    CT3_CHECK(!in.bad(), ErrorKind::io, "cannot read tokenizer file '{}'", file.string());
    return ss.str();
}

json read_json(const fs::path & file) {
    try {
        json j = json::parse(read_text(file));
        CT3_CHECK(j.is_object(), ErrorKind::bad_format, "'{}' is not a JSON object", file.string());
        return j;
    } catch (const json::exception & e) {
        fail(ErrorKind::bad_format, "'{}' is not valid JSON: {}", file.string(), e.what());
    }
}

// Typed field access: a present field of the wrong type is an error naming the file and field.
bool get_bool(const json & j, const char * key, const fs::path & file, bool fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    CT3_CHECK(j[key].is_boolean(), ErrorKind::bad_format, "'{}': field '{}' must be a boolean", file.string(), key);
    return j[key].get<bool>();
}

std::string get_string(const json & j, const char * key, const fs::path & file, const std::string & fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    CT3_CHECK(j[key].is_string(), ErrorKind::bad_format, "'{}': field '{}' must be a string", file.string(), key);
    return j[key].get<std::string>();
}

// A special token in tokenizer_config.json / special_tokens_map.json: "[CLS]" or {"content": "[CLS]", ...}.
void read_token(const json & j, const char * key, const fs::path & file, std::string & token) {
    if (!j.contains(key) || j[key].is_null()) return;
    const json & v = j[key];
    if (v.is_string()) {
        token = v.get<std::string>();
    } else {
        CT3_CHECK(v.is_object() && v.contains("content") && v["content"].is_string(), ErrorKind::bad_format,
                  "'{}': field '{}' must be a string or an object with a string 'content'", file.string(), key);
        token = v["content"].get<std::string>();
    }
}

int32_t get_id(const json & v, const fs::path & file, const std::string & what) {
    CT3_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < kMaxTokenId, ErrorKind::bad_format,
              "'{}': {} must be a token id in [0, {})", file.string(), what, kMaxTokenId);
    return static_cast<int32_t>(v.get<int64_t>());
}

std::vector<std::string> read_vocab_txt(const fs::path & file) {
    const std::string text = read_text(file);
    std::vector<std::string> vocab;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF copies of vocab.txt exist
        vocab.push_back(std::move(line));
        start = end + 1;
    }
    CT3_CHECK(!vocab.empty(), ErrorKind::bad_format, "vocabulary '{}' is empty", file.string());
    CT3_CHECK(static_cast<int64_t>(vocab.size()) < kMaxTokenId, ErrorKind::bad_format,
              "vocabulary '{}' has too many lines ({})", file.string(), vocab.size());
    return vocab;
}

void read_normalizer(const json & n, const fs::path & file, WordPieceConfig & c) {
    if (n.is_null()) {  // no normalizer at all: the text is tokenized as given
        c.clean_text = c.handle_chinese_chars = c.lowercase = false;
        c.strip_accents = false;
        return;
    }
    const std::string type = get_string(n, "type", file, "");
    if (type != "BertNormalizer") {
        logger("model")->warn("{}: normalizer type '{}' is not BertNormalizer; using BERT defaults", file.string(),
                              type);
        return;
    }
    c.clean_text = get_bool(n, "clean_text", file, true);
    c.handle_chinese_chars = get_bool(n, "handle_chinese_chars", file, true);
    c.lowercase = get_bool(n, "lowercase", file, true);
    if (n.contains("strip_accents") && !n["strip_accents"].is_null()) {
        c.strip_accents = get_bool(n, "strip_accents", file, true);
    }
}

// TemplateProcessing ("single": specials around {"Sequence"}), BertProcessing / RobertaProcessing
// ("cls": [token, id], "sep": [token, id]).
void read_post_processor(const json & p, const fs::path & file, WordPieceConfig & c) {
    if (!p.is_object()) return;
    const std::string type = get_string(p, "type", file, "");
    if (type == "TemplateProcessing" && p.contains("single") && p["single"].is_array()) {
        bool after_sequence = false;
        for (const json & item : p["single"]) {
            if (item.contains("Sequence")) {
                after_sequence = true;
                continue;
            }
            CT3_CHECK(item.contains("SpecialToken") && item["SpecialToken"].contains("id"), ErrorKind::bad_format,
                      "'{}': post_processor.single items must be Sequence or SpecialToken", file.string());
            const std::string name = get_string(item["SpecialToken"], "id", file, "");
            const json * entry = nullptr;
            if (p.contains("special_tokens") && p["special_tokens"].contains(name)) entry = &p["special_tokens"][name];
            CT3_CHECK(entry != nullptr && entry->contains("ids") && (*entry)["ids"].is_array(), ErrorKind::bad_format,
                      "'{}': post_processor special token '{}' has no ids", file.string(), name);
            for (const json & id : (*entry)["ids"]) {
                (after_sequence ? c.suffix_ids : c.prefix_ids).push_back(get_id(id, file, "post_processor id"));
            }
        }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
        for (const char * key : {"cls", "sep"}) {
            CT3_CHECK(p.contains(key) && p[key].is_array() && p[key].size() == 2, ErrorKind::bad_format,
                      "'{}': post_processor.{} must be [token, id]", file.string(), key);
            (std::string(key) == "cls" ? c.prefix_ids : c.suffix_ids)
                .push_back(get_id(p[key][1], file, std::string("post_processor.") + key));
        }
    } else if (!type.empty()) {
        logger("model")->warn("{}: post_processor type '{}' not understood; using [CLS] ... [SEP]", file.string(),
                              type);
    }
}

std::vector<std::string> read_tokenizer_json(const json & j, const fs::path & file, WordPieceConfig & c,
                                             bool want_vocab) {
    CT3_CHECK(j.contains("model") && j["model"].is_object(), ErrorKind::bad_format, "'{}' has no 'model' object",
              file.string());
    const json & m = j["model"];
    const std::string type = get_string(m, "type", file, "WordPiece");
    CT3_CHECK(type == "WordPiece", ErrorKind::unsupported, "'{}': model.type is '{}' (expected WordPiece)",
              file.string(), type);
    c.unk_token = get_string(m, "unk_token", file, c.unk_token);
    c.continuing_prefix = get_string(m, "continuing_subword_prefix", file, c.continuing_prefix);
    if (m.contains("max_input_chars_per_word") && !m["max_input_chars_per_word"].is_null()) {
        c.max_input_chars_per_word = static_cast<size_t>(get_id(m["max_input_chars_per_word"], file,
                                                                "model.max_input_chars_per_word"));
    }
    if (j.contains("normalizer")) read_normalizer(j["normalizer"], file, c);
    if (j.contains("post_processor")) read_post_processor(j["post_processor"], file, c);
    const json * decoder = j.contains("decoder") && j["decoder"].is_object() ? &j["decoder"] : nullptr;
    if (decoder != nullptr && get_string(*decoder, "type", file, "") == "WordPiece") {
        c.decoder_cleanup = get_bool(*decoder, "cleanup", file, true);
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
        for (const json & t : j["added_tokens"]) {
            CT3_CHECK(t.is_object() && t.contains("id") && t.contains("content"), ErrorKind::bad_format,
                      "'{}': added_tokens entries need 'id' and 'content'", file.string());
            // Tokens with normalized=true are matched after normalization by HF; they are ordinary
            // vocabulary entries for WordPiece models, so only verbatim (normalized=false) ones are kept.
            if (get_bool(t, "normalized", file, false)) continue;
            c.added_tokens.push_back({get_string(t, "content", file, ""), get_id(t["id"], file, "added token id"),
                                      get_bool(t, "special", file, true)});
        }
    }
    std::vector<std::string> vocab;
    if (want_vocab) {
        CT3_CHECK(m.contains("vocab") && m["vocab"].is_object(), ErrorKind::bad_format,
                  "'{}': model.vocab must be an object token -> id", file.string());
        for (const auto & [token, id_json] : m["vocab"].items()) {
            const int32_t id = get_id(id_json, file, "model.vocab['" + token + "']");
            if (static_cast<size_t>(id) >= vocab.size()) vocab.resize(static_cast<size_t>(id) + 1);
            CT3_CHECK(vocab[id].empty(), ErrorKind::bad_format, "'{}': model.vocab gives id {} to both '{}' and '{}'",
                      file.string(), id, vocab[id], token);
            vocab[id] = token;
        }
    }
    return vocab;
}

void read_tokenizer_config(const json & j, const fs::path & file, WordPieceConfig & c) {
    read_token(j, "unk_token", file, c.unk_token);
    read_token(j, "cls_token", file, c.cls_token);
    read_token(j, "sep_token", file, c.sep_token);
    read_token(j, "pad_token", file, c.pad_token);
    read_token(j, "mask_token", file, c.mask_token);
    read_token(j, "bos_token", file, c.bos_token);
    read_token(j, "eos_token", file, c.eos_token);
    if (j.contains("do_lower_case")) c.lowercase = get_bool(j, "do_lower_case", file, c.lowercase);
    if (j.contains("strip_accents") && !j["strip_accents"].is_null()) {
        c.strip_accents = get_bool(j, "strip_accents", file, true);
    }
    c.handle_chinese_chars = get_bool(j, "tokenize_chinese_chars", file, c.handle_chinese_chars);
    c.clean_up_tokenization_spaces = get_bool(j, "clean_up_tokenization_spaces", file, c.clean_up_tokenization_spaces);
    if (j.contains("model_max_length") && j["model_max_length"].is_number()) {
        // HF writes a huge sentinel (1e30) for "no limit".
        const double v = j["model_max_length"].get<double>();
        c.model_max_length = v > 0 && v < 1e9 ? static_cast<size_t>(v) : 0;
    }
    // Newer tokenizer_config.json files list the added tokens here when there is no tokenizer.json.
    if (c.added_tokens.empty() && j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
        for (const auto & [id_text, t] : j["added_tokens_decoder"].items()) {
            int64_t id = -1;
            try {
                id = std::stoll(id_text);
            } catch (const std::exception &) {
            }
            CT3_CHECK(id >= 0 && id < kMaxTokenId && t.is_object(), ErrorKind::bad_format,
                      "'{}': added_tokens_decoder key '{}' is not a token id", file.string(), id_text);
            c.added_tokens.push_back(
                {get_string(t, "content", file, ""), static_cast<int32_t>(id), get_bool(t, "special", file, true)});
        }
    }
}

}  // namespace

std::unique_ptr<WordPieceTokenizer> load_wordpiece_tokenizer(const fs::path & path) {
    std::error_code ec;
    CT3_CHECK(fs::exists(path, ec), ErrorKind::not_found, "WordPiece tokenizer '{}' not found", path.string());
    fs::path dir, vocab_file, json_file;
    if (fs::is_directory(path, ec)) {
        dir = path;
        if (fs::exists(dir / "vocab.txt", ec)) vocab_file = dir / "vocab.txt";
        if (fs::exists(dir / "tokenizer.json", ec)) json_file = dir / "tokenizer.json";
        CT3_CHECK(!vocab_file.empty() || !json_file.empty(), ErrorKind::not_found,
                  "folder '{}' has neither vocab.txt nor tokenizer.json", path.string());
    } else if (path.extension() == ".json") {
        dir = path.parent_path();
        json_file = path;
    } else {
        dir = path.parent_path();
        vocab_file = path;
        if (fs::exists(dir / "tokenizer.json", ec)) json_file = dir / "tokenizer.json";
    }

    WordPieceConfig config;
    std::vector<std::string> vocab;
    if (!json_file.empty()) vocab = read_tokenizer_json(read_json(json_file), json_file, config, vocab_file.empty());
    if (!vocab_file.empty()) vocab = read_vocab_txt(vocab_file);
    for (const char * name : {"special_tokens_map.json", "tokenizer_config.json"}) {
        if (fs::exists(dir / name, ec)) read_tokenizer_config(read_json(dir / name), dir / name, config);
    }
    const fs::path source = vocab_file.empty() ? json_file : vocab_file;
    auto tokenizer =
        std::make_unique<WordPieceTokenizer>(std::move(vocab), std::move(config), "'" + source.string() + "'");
    logger("model")->debug("WordPiece tokenizer {}: {} tokens, lowercase {}", source.string(), tokenizer->vocab_size(),
                           tokenizer->config().lowercase);
    return tokenizer;
}

}  // namespace ct3
