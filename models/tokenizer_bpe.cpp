#include "models/tokenizer_bpe.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/bpe_model.h"
#include "models/error.h"
#include "models/log.h"
#include "models/pretokenizer.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

struct AddedToken {
    int32_t id;
    std::string content;
    bool special, single_word, lstrip, rstrip;
};

nlohmann::json read_json(const fs::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open {}", path.string());
    std::ostringstream text;
    text << in.rdbuf();
    CT3_CHECK(!in.bad(), ErrorKind::io, "cannot read {}", path.string());
    try {
        return nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "{}: not valid JSON: {}", path.string(), e.what());
    }
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// A "word character" for single_word tokens: ASCII alphanumerics, '_', and (approximately) any non-ASCII byte.
bool is_word_byte(char c) {
    const auto b = static_cast<uint8_t>(c);
    return b >= 0x80 || std::isalnum(b) != 0 || c == '_';
}

class BpeTokenizer : public Tokenizer {
public:
    BpeTokenizer(const nlohmann::json & root, const std::string & file, const nlohmann::json * config,
                 const std::string & config_file)
        : model_(json_require(root, "model", {file, ""}), {file, "model"}) {
        const JsonWhere top{file, ""};
        parse_added_tokens(root, top);
        parse_normalizer(root, top);
        if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
            pre_tokenizer_ = PreTokenizer::from_json(*it, top.field("pre_tokenizer"));
        }
        if (auto it = root.find("post_processor"); it != root.end() && !it->is_null()) {
            parse_post_processor(*it, top.field("post_processor"));
        }
        if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
            const std::string type = json_type(*it, top.field("decoder"));
            CT3_CHECK(type == "ByteLevel", ErrorKind::unsupported, "{} '{}' is not supported (supported: ByteLevel)",
                      json_at(top.field("decoder.type")), type);
            byte_level_decoder_ = true;
        }
        vocab_size_ = static_cast<size_t>(model_.max_id() + 1);
        for (const AddedToken & t : added_) vocab_size_ = std::max(vocab_size_, static_cast<size_t>(t.id) + 1);
        resolve_special_ids(config, config_file);
    }

    std::vector<int32_t> encode(const std::string & text, const EncodeOptions & options) const override {
        std::vector<int32_t> ids;
        std::vector<std::string> pieces;
        size_t segment_start = 0;
        auto encode_segment = [&](size_t end) {
            if (end <= segment_start) return;
            pieces.assign(1, text.substr(segment_start, end - segment_start));
            if (pre_tokenizer_) pre_tokenizer_->apply(pieces);
            for (const std::string & piece : pieces) model_.encode_word(piece, ids);
        };
        for (size_t pos = 0; pos < text.size();) {
            const AddedToken * token = match_added(text, pos);
            if (token == nullptr) {
                ++pos;
                continue;
            }
            size_t start = pos, end = pos + token->content.size();
            if (token->lstrip) {
                while (start > segment_start && is_ascii_space(text[start - 1])) --start;
            }
            if (token->rstrip) {
                while (end < text.size() && is_ascii_space(text[end])) ++end;
            }
            encode_segment(start);
            ids.push_back(token->id);
            segment_start = pos = end;
        }
        encode_segment(text.size());

        const size_t n_special = options.add_special_tokens ? prefix_.size() + suffix_.size() : 0;
        if (options.max_length > 0) {
            // Like HF: the text is cut so that the template's specials still fit around it.
            const size_t budget = options.max_length > n_special ? options.max_length - n_special : 0;
            if (ids.size() > budget) ids.resize(budget);
        }
        if (options.add_special_tokens && n_special > 0) {
            ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
            ids.insert(ids.end(), suffix_.begin(), suffix_.end());
            if (options.max_length > 0 && ids.size() > options.max_length) ids.resize(options.max_length);
        }
        return ids;
    }

    std::string decode(const std::vector<int32_t> & ids, bool skip_special) const override {
        std::string out;
        for (int32_t id : ids) {
            if (skip_special && is_special(id)) continue;
            append_piece(id, out);
        }
        return out;
    }

    std::string id_to_piece(int32_t id) const override {
        std::string out;
        append_piece(id, out);
        return out;
    }

    std::optional<int32_t> piece_to_id(const std::string & piece) const override {
        for (const AddedToken & t : added_) {
            if (t.content == piece) return t.id;
        }
        return model_.token_to_id(piece);
    }

    size_t vocab_size() const override { return vocab_size_; }
    int32_t bos_id() const override { return bos_id_; }
    int32_t eos_id() const override { return eos_id_; }
    int32_t pad_id() const override { return pad_id_; }
    int32_t unk_id() const override { return model_.unk_id(); }

    bool is_special(int32_t id) const override {
        return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
    }

private:
    // The added token matching text at `pos` (longest first), or nullptr.
    const AddedToken * match_added(const std::string & text, size_t pos) const {
        for (size_t index : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
            const AddedToken & t = added_[index];
            if (text.compare(pos, t.content.size(), t.content) != 0) continue;
            const size_t end = pos + t.content.size();
            if (t.single_word && ((pos > 0 && is_word_byte(text[pos - 1])) ||
                                  (end < text.size() && is_word_byte(text[end])))) {
                continue;
            }
            return &t;
        }
        return nullptr;
    }

    // The text of token `id` as it appears in decoded output; unknown ids contribute nothing (models often have
    // more embedding rows than tokens, and HF skips such ids the same way).
    void append_piece(int32_t id, std::string & out) const {
        const std::string * token = nullptr;
        if (id >= 0 && static_cast<size_t>(id) < added_content_.size() && added_content_[id] != nullptr) {
            token = added_content_[id];
        } else {
            token = model_.id_to_token(id);
        }
        if (token == nullptr) return;
        if (!byte_level_decoder_ || !byte_level_decode(*token, out)) out += *token;
    }

    void parse_added_tokens(const nlohmann::json & root, const JsonWhere & top) {
        auto it = root.find("added_tokens");
        if (it == root.end() || it->is_null()) return;
        const JsonWhere list_at = top.field("added_tokens");
        CT3_CHECK(it->is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)", json_at(list_at),
                  it->type_name());
        for (size_t i = 0; i < it->size(); ++i) {
            const nlohmann::json & node = (*it)[i];
            const JsonWhere at = list_at.index(i);
            AddedToken t;
            t.id = json_token_id(json_require(node, "id", at), at.field("id"));
            t.content = json_string(json_require(node, "content", at), at.field("content"));
            CT3_CHECK(!t.content.empty(), ErrorKind::bad_format, "{} is empty", json_at(at.field("content")));
            t.special = json_bool_or(node, "special", false, at);
            t.single_word = json_bool_or(node, "single_word", false, at);
            t.lstrip = json_bool_or(node, "lstrip", false, at);
            t.rstrip = json_bool_or(node, "rstrip", false, at);
            added_.push_back(std::move(t));
        }
        // Longest first, so that the first hit in a bucket is the longest match at that position.
        std::vector<size_t> order(added_.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return added_[a].content.size() > added_[b].content.size(); });
        for (size_t i : order) added_by_first_byte_[static_cast<uint8_t>(added_[i].content[0])].push_back(i);
        for (const AddedToken & t : added_) {
            if (static_cast<size_t>(t.id) >= added_content_.size()) {
                added_content_.resize(t.id + 1, nullptr);
                special_.resize(t.id + 1, false);
            }
            added_content_[t.id] = &t.content;
            special_[t.id] = special_[t.id] || t.special;
        }
    }

    void parse_normalizer(const nlohmann::json & root, const JsonWhere & top) {
        auto it = root.find("normalizer");
        if (it == root.end() || it->is_null()) return;
        const JsonWhere at = top.field("normalizer");
        std::vector<std::pair<const nlohmann::json *, JsonWhere>> nodes{{&*it, at}};
        if (json_type(*it, at) == "Sequence") {
            nodes.clear();
            const nlohmann::json & list = json_require(*it, "normalizers", at);
            CT3_CHECK(list.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)",
                      json_at(at.field("normalizers")), list.type_name());
            for (size_t i = 0; i < list.size(); ++i) nodes.emplace_back(&list[i], at.field("normalizers").index(i));
        }
        for (const auto & [node, where] : nodes) {
            const std::string type = json_type(*node, where);
            CT3_CHECK(type == "NFC", ErrorKind::unsupported, "{} '{}' is not supported (supported: null, NFC)",
                      json_at(where.field("type")), type);
        }
        // Qwen2 declares NFC. Text reaching a tokenizer is almost always NFC already, and a faithful NFC needs
        // the Unicode composition tables, so NFC is applied as the identity.
        logger("model")->debug("{}: normalizer NFC is applied as identity (input assumed NFC)", at.file);
    }

    // Appends the ids of one `special_tokens` entry of a TemplateProcessing node.
    void template_special(const nlohmann::json & special_tokens, const std::string & name, const JsonWhere & where,
                          std::vector<int32_t> & out) const {
        const JsonWhere entry_at = where.field(name);
        const nlohmann::json & entry = json_require(special_tokens, name, where);
        const nlohmann::json & ids = json_require(entry, "ids", entry_at);
        CT3_CHECK(ids.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array of ids)",
                  json_at(entry_at.field("ids")), ids.type_name());
        for (size_t i = 0; i < ids.size(); ++i) out.push_back(json_token_id(ids[i], entry_at.field("ids").index(i)));
    }

    // Post-processors compose: each wraps the result of the previous one, so prefixes prepend and suffixes append.
    void parse_post_processor(const nlohmann::json & node, const JsonWhere & where) {
        const std::string type = json_type(node, where);
        std::vector<int32_t> prefix, suffix;
        if (type == "ByteLevel") {
            return;  // only adjusts offsets
        } else if (type == "Sequence") {
            const nlohmann::json & list = json_require(node, "processors", where);
            CT3_CHECK(list.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)",
                      json_at(where.field("processors")), list.type_name());
            for (size_t i = 0; i < list.size(); ++i) parse_post_processor(list[i], where.field("processors").index(i));
            return;
        } else if (type == "TemplateProcessing") {
            const nlohmann::json & single = json_require(node, "single", where);
            const nlohmann::json & specials = json_require(node, "special_tokens", where);
            const JsonWhere single_at = where.field("single");
            CT3_CHECK(single.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)", json_at(single_at),
                      single.type_name());
            bool seen_a = false;
            for (size_t i = 0; i < single.size(); ++i) {
                const JsonWhere at = single_at.index(i);
                if (single[i].is_object() && single[i].contains("SpecialToken")) {
                    const nlohmann::json & s = single[i]["SpecialToken"];
                    const std::string name = json_string(json_require(s, "id", at.field("SpecialToken")),
                                                         at.field("SpecialToken.id"));
                    template_special(specials, name, where.field("special_tokens"), seen_a ? suffix : prefix);
                } else if (single[i].is_object() && single[i].contains("Sequence")) {
                    const nlohmann::json & s = single[i]["Sequence"];
                    const std::string name = json_string(json_require(s, "id", at.field("Sequence")),
                                                         at.field("Sequence.id"));
                    CT3_CHECK(name == "A" && !seen_a, ErrorKind::unsupported,
                              "{} is sequence '{}' (a single-sequence template takes sequence A once)", json_at(at),
                              name);
                    seen_a = true;
                } else {
                    fail(ErrorKind::bad_format,
                         "{} is {} (expected {{\"SpecialToken\": ...}} or {{\"Sequence\": ...}})", json_at(at),
                         single[i].dump());
                }
            }
            CT3_CHECK(seen_a, ErrorKind::bad_format, "{} never places sequence A", json_at(single_at));
        } else if (type == "RobertaProcessing" || type == "BertProcessing") {
            // {"cls": ["<s>", 0], "sep": ["</s>", 2]} -> cls A sep
            for (const char * key : {"cls", "sep"}) {
                const nlohmann::json & pair = json_require(node, key, where);
                CT3_CHECK(pair.is_array() && pair.size() == 2, ErrorKind::bad_format,
                          "{} is {} (expected [token, id])", json_at(where.field(key)), pair.dump());
                (key[0] == 'c' ? prefix : suffix).push_back(json_token_id(pair[1], where.field(key).index(1)));
            }
        } else {
            fail(ErrorKind::unsupported,
                 "{} '{}' is not supported (supported: ByteLevel, TemplateProcessing, RobertaProcessing, "
                 "BertProcessing, Sequence)",
                 json_at(where.field("type")), type);
        }
        prefix_.insert(prefix_.begin(), prefix.begin(), prefix.end());
        suffix_.insert(suffix_.end(), suffix.begin(), suffix.end());
    }

    // The id of a token named in tokenizer_config.json or guessed by name; -1 when absent.
    int32_t find_token(const std::string & content) const {
        std::optional<int32_t> id = piece_to_id(content);
        return id ? *id : -1;
    }

    void resolve_special_ids(const nlohmann::json * config, const std::string & config_file) {
        auto from_config = [&](const char * key, int32_t & out) -> bool {
            if (config == nullptr || !config->is_object() || !config->contains(key)) return false;
            const nlohmann::json & v = config->at(key);
            const JsonWhere at{config_file, key};
            if (v.is_null()) return true;  // explicitly "none"
            const std::string content = v.is_object() ? json_string(json_require(v, "content", at), at.field("content"))
                                                      : json_string(v, at);
            out = find_token(content);
            CT3_CHECK(out >= 0, ErrorKind::bad_format, "{} '{}' is neither an added token nor in the vocabulary",
                      json_at(at), content);
            return true;
        };
        auto guess = [&](std::initializer_list<const char *> names) {
            for (const char * name : names) {
                if (int32_t id = find_token(name); id >= 0) return id;
            }
            return int32_t(-1);
        };
        if (!from_config("bos_token", bos_id_)) bos_id_ = guess({"<|begin_of_text|>", "<s>"});
        if (!from_config("eos_token", eos_id_)) {
            eos_id_ = guess({"<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "</s>"});
        }
        from_config("pad_token", pad_id_);
    }

    BpeModel model_;
    std::vector<AddedToken> added_;
    std::vector<size_t> added_by_first_byte_[256];
    std::vector<const std::string *> added_content_;  // id -> content of the added token with that id
    std::vector<bool> special_;                      // id -> added with special=true
    std::unique_ptr<PreTokenizer> pre_tokenizer_;
    std::vector<int32_t> prefix_, suffix_;  // single-sequence template around the text
    bool byte_level_decoder_ = false;
    size_t vocab_size_ = 0;
    int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const fs::path & tokenizer_json) {
    const std::string file = tokenizer_json.string();
    const nlohmann::json root = read_json(tokenizer_json);
    CT3_CHECK(root.is_object(), ErrorKind::bad_format, "{}: top level is a {} (expected a tokenizer.json object)", file,
              root.type_name());
    const fs::path config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
    nlohmann::json config;
    const bool has_config = fs::is_regular_file(config_path);
    if (has_config) config = read_json(config_path);
    auto tokenizer = std::make_unique<BpeTokenizer>(root, file, has_config ? &config : nullptr, config_path.string());
    logger("model")->debug("{}: byte-level BPE, {} ids, bos {} eos {}", file, tokenizer->vocab_size(),
                           tokenizer->bos_id(), tokenizer->eos_id());
    return tokenizer;
}

}  // namespace ct3
