#include "models/bpe_model.h"

#include <queue>

#include <fmt/format.h>

#include "models/pretokenizer.h"

namespace ct3 {

namespace {

constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 16;

// A field that must be null or absent because we do not implement it.
void require_unset(const nlohmann::json & model, const char * key, const JsonWhere & where) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null()) return;
    if (it->is_string() && it->get<std::string>().empty()) return;
    fail(ErrorKind::unsupported, "{} is {} but only null is supported (word-piece style BPE is not implemented)",
         json_at(where.field(key)), it->dump());
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json & model, const JsonWhere & where) {
    const std::string type = json_type(model, where);
    CT3_CHECK(type == "BPE", ErrorKind::unsupported, "{} '{}' is not supported by the BPE loader (expected BPE)",
              json_at(where.field("type")), type);
    require_unset(model, "continuing_subword_prefix", where);
    require_unset(model, "end_of_word_suffix", where);
    if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
        CT3_CHECK(it->is_number() && it->get<double>() == 0.0, ErrorKind::unsupported,
                  "{} is {} (BPE dropout is a training-time feature; expected null)", json_at(where.field("dropout")),
                  it->dump());
    }
    byte_fallback_ = json_bool_or(model, "byte_fallback", false, where);
    fuse_unk_ = json_bool_or(model, "fuse_unk", false, where);
    ignore_merges_ = json_bool_or(model, "ignore_merges", false, where);

    const nlohmann::json & vocab = json_require(model, "vocab", where);
    const JsonWhere vocab_at = where.field("vocab");
    CT3_CHECK(vocab.is_object(), ErrorKind::bad_format, "{} is a {} (expected an object {{piece: id}})",
              json_at(vocab_at), vocab.type_name());
    vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const int32_t id = json_token_id(it.value(), vocab_at.field(it.key()));
        if (static_cast<size_t>(id) >= id_to_token_.size()) {
            id_to_token_.resize(id + 1);
            has_id_.resize(id + 1, false);
        }
        CT3_CHECK(!has_id_[id], ErrorKind::bad_format, "{}: pieces '{}' and '{}' both have id {}", json_at(vocab_at),
                  id_to_token_[id], it.key(), id);
        has_id_[id] = true;
        id_to_token_[id] = it.key();
        vocab_.emplace(it.key(), id);
    }

    for (int b = 0; b < 256; ++b) {
        auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }

    if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
        const std::string unk = json_string(*it, where.field("unk_token"));
        auto found = vocab_.find(unk);
        CT3_CHECK(found != vocab_.end(), ErrorKind::bad_format, "{} '{}' is not in {}",
                  json_at(where.field("unk_token")), unk, vocab_at.path);
        unk_id_ = found->second;
    }

    parse_merges(json_require(model, "merges", where), where.field("merges"));
}

void BpeModel::parse_merges(const nlohmann::json & merges, const JsonWhere & where) {
    CT3_CHECK(merges.is_array(), ErrorKind::bad_format, "{} is a {} (expected an array)", json_at(where),
              merges.type_name());
    merges_.reserve(merges.size());
    std::string left, right;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const nlohmann::json & m = merges[rank];
        const JsonWhere at = where.index(rank);
        if (m.is_string()) {
            // Old format "a b": byte-level pieces never contain a raw space, so exactly one space separates them.
            const std::string & s = m.get_ref<const std::string &>();
            const size_t space = s.find(' ');
            CT3_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos, ErrorKind::bad_format,
                      "{} is '{}' (expected two pieces separated by one space)", json_at(at), s);
            left = s.substr(0, space);
            right = s.substr(space + 1);
        } else if (m.is_array() && m.size() == 2) {
            left = json_string(m[0], at.index(0));
            right = json_string(m[1], at.index(1));
        } else {
            fail(ErrorKind::bad_format, "{} is {} (expected \"left right\" or [\"left\", \"right\"])", json_at(at),
                 m.dump());
        }
        auto l = vocab_.find(left), r = vocab_.find(right), n = vocab_.find(left + right);
        CT3_CHECK(l != vocab_.end(), ErrorKind::bad_format, "{}: piece '{}' is not in the vocabulary", json_at(at),
                  left);
        CT3_CHECK(r != vocab_.end(), ErrorKind::bad_format, "{}: piece '{}' is not in the vocabulary", json_at(at),
                  right);
        CT3_CHECK(n != vocab_.end(), ErrorKind::bad_format, "{}: merged piece '{}' is not in the vocabulary",
                  json_at(at), left + right);
        // A repeated pair keeps its first (best) rank, like HF.
        merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), n->second});
    }
}

std::optional<int32_t> BpeModel::token_to_id(const std::string & token) const {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

const std::string * BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
    return &id_to_token_[id];
}

void BpeModel::encode_word(const std::string & word, std::vector<int32_t> & ids) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        // Llama-3: a pre-token that is itself a vocabulary entry is taken whole, whatever the merges say.
        if (auto it = vocab_.find(word); it != vocab_.end()) {
            ids.push_back(it->second);
            return;
        }
    }
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (auto it = cache_.find(word); it != cache_.end()) {
            ids.insert(ids.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t first = ids.size();
    merge_word(word, ids);
    if (cacheable) {
        std::vector<int32_t> merged(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (cache_.size() >= kMaxCacheEntries) cache_.clear();
        cache_.emplace(word, std::move(merged));
    }
}

void BpeModel::merge_word(const std::string & word, std::vector<int32_t> & ids) const {
    // Symbols form a doubly linked list over the characters; merges are applied lowest rank first (leftmost on
    // ties) from a heap, with stale heap entries skipped: O(n log n) even for pathological long pre-tokens.
    struct Symbol {
        int32_t id;
        int32_t prev, next;
        bool alive;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    std::string ch;
    for (size_t pos = 0; pos < word.size();) {
        const size_t len = utf8_char_length(word, pos);
        ch.assign(word, pos, len);
        pos += len;
        int32_t id = -1;
        if (auto it = vocab_.find(ch); it != vocab_.end()) {
            id = it->second;
        } else if (byte_fallback_) {
            bool all_bytes = true;
            for (char c : ch) all_bytes = all_bytes && byte_ids_[static_cast<uint8_t>(c)] >= 0;
            if (all_bytes) {
                for (char c : ch) {
                    const auto n = static_cast<int32_t>(symbols.size());
                    symbols.push_back({byte_ids_[static_cast<uint8_t>(c)], n - 1, n + 1, true});
                }
                continue;
            }
        }
        if (id < 0) {
            if (unk_id_ < 0) continue;  // HF drops characters it can represent no other way
            if (fuse_unk_ && !symbols.empty() && symbols.back().id == unk_id_) continue;
            id = unk_id_;
        }
        const auto n = static_cast<int32_t>(symbols.size());
        symbols.push_back({id, n - 1, n + 1, true});
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;

    struct Candidate {
        int32_t rank, pos, new_id;
        bool operator>(const Candidate & o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto push_pair = [&](int32_t pos) {
        const int32_t next = symbols[pos].next;
        if (next < 0) return;
        auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
        if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.new_id});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

    while (!heap.empty()) {
        const Candidate top = heap.top();
        heap.pop();
        Symbol & left = symbols[top.pos];
        if (!left.alive || left.next < 0) continue;
        Symbol & right = symbols[left.next];
        // Stale entry: the pair at this position changed since it was pushed. Equal new_id means an equal pair,
        // because the text a position covers only grows.
        auto it = merges_.find(pair_key(left.id, right.id));
        if (it == merges_.end() || it->second.new_id != top.new_id) continue;
        left.id = top.new_id;
        right.alive = false;
        left.next = right.next;
        if (left.next >= 0) symbols[left.next].prev = top.pos;
        if (left.prev >= 0) push_pair(left.prev);
        push_pair(top.pos);
    }
    for (const Symbol & s : symbols) {
        if (s.alive) ids.push_back(s.id);
    }
}

}  // namespace ct3
