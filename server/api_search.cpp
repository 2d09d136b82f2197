// POST /v1/search and POST /v1/embeddings: strict request validation (every field typed and
// bounded, unknown fields rejected) so that a client's typo fails loudly instead of being ignored.
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "kb/knowledge_base.h"
#include "models/error.h"
#include "server/api_detail.h"
#include "server/metrics.h"

namespace ct3::server::detail {

using nlohmann::json;

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

void reject_unknown_fields(const json & body, const std::set<std::string> & allowed) {
    for (const auto & item : body.items()) {
        if (allowed.count(item.key())) continue;
        std::string names;
        for (const auto & a : allowed) names += (names.empty() ? "" : ", ") + a;
        reject(400, item.key(), "unknown field '{}' (expected one of: {})", quote_for_message(item.key()), names);
    }
}

// An integer field within [lo, hi]. Integral JSON numbers only: 3.0 and "3" are rejected, as a
// float k usually means a client bug.
int64_t get_int(const json & body, const char * name, int64_t lo, int64_t hi, const char * bound_hint = "") {
    const json & v = body.at(name);
    if (!v.is_number_integer())
        reject(400, name, "field '{}' must be an integer (got {} {})", name, json_type_name(v),
               quote_for_message(dump_json(v), 32));
    int64_t value;
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        value = u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max() : int64_t(u);
    } else {
        value = v.get<int64_t>();
    }
    if (value < lo || value > hi)
        reject(400, name, "field '{}' must be between {} and {}{} (got {})", name, lo, hi, bound_hint,
               quote_for_message(dump_json(v), 32));
    return value;
}

std::vector<float> get_embedding(const json & v, const char * name, int64_t dim, const std::string & embedder) {
    if (!v.is_array()) reject(400, name, "field '{}' must be an array of numbers (got {})", name, json_type_name(v));
    if (int64_t(v.size()) != dim)
        reject(400, name, "field '{}' has {} dimensions; this knowledge base expects {} (embedder {})", name, v.size(),
               dim, embedder);
    std::vector<float> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_number())
            reject(400, name, "{}[{}] must be a number (got {})", name, i, json_type_name(v[i]));
        // A finite double can still overflow float32: check after the conversion.
        out[i] = static_cast<float>(v[i].get<double>());
        if (!std::isfinite(out[i]))
            reject(400, name, "{}[{}] = {} is not a finite float32", name, i, quote_for_message(dump_json(v[i]), 32));
    }
    return out;
}

bool all_zero(const std::vector<float> & v) {
    for (float x : v)
        if (x != 0) return false;
    return true;
}

}  // namespace

Response handle_v1_search(const Context & context, const Request & request) {
    const auto start = std::chrono::steady_clock::now();
    const json body = parse_body_object(request);
    reject_unknown_fields(body, {"query", "embedding", "k", "mode", "candidates", "lambda", "nprobe", "ef_search"});
    const kb::KnowledgeBase & kb = *context.backend.kb;
    const bool has_query = body.contains("query"), has_embedding = body.contains("embedding");
    if (has_query == has_embedding)
        reject(400, "query", "give exactly one of 'query' (text) and 'embedding' (array of {} numbers) (got {})",
               kb.dim(), has_query ? "both" : "neither");

    kb::SearchParams params;
    params.mode = context.options.default_mode;
    params.lambda = context.options.default_lambda;
    if (body.contains("k"))
        params.k = get_int(body, "k", 1, context.options.max_k, " (--max_k)");
    if (body.contains("mode")) {
        const json & m = body["mode"];
        if (!m.is_string() || (m != "sift" && m != "faiss"))
            reject(400, "mode", "field 'mode' must be \"sift\" or \"faiss\" (got {})",
                   quote_for_message(dump_json(m), 32));
        params.mode = kb::parse_search_mode(m.get<std::string>());
    }
    if (body.contains("candidates")) {
        params.candidates = get_int(body, "candidates", 1, 100000);
        if (params.candidates < params.k)
            reject(400, "candidates", "field 'candidates' ({}) must be >= k ({})", params.candidates, params.k);
    } else {
        params.candidates = std::max(context.options.default_candidates, params.k);
    }
    if (body.contains("lambda")) {
        const json & l = body["lambda"];
        if (!l.is_number()) reject(400, "lambda", "field 'lambda' must be a number (got {})", json_type_name(l));
        params.lambda = l.get<double>();
        if (!std::isfinite(params.lambda) || params.lambda <= 0)
            reject(400, "lambda", "field 'lambda' must be a positive finite number (got {})",
                   quote_for_message(dump_json(l), 32));
    }
    if (body.contains("nprobe")) params.nprobe = get_int(body, "nprobe", 1, 1000000);
    if (body.contains("ef_search")) params.ef_search = get_int(body, "ef_search", 1, 1000000);

    std::vector<float> query;
    double embed_ms = 0;
    if (has_query) {
        const json & q = body["query"];
        if (!q.is_string()) reject(400, "query", "field 'query' must be a string (got {})", json_type_name(q));
        if (q.get_ref<const std::string &>().empty()) reject(400, "query", "field 'query' must not be empty");
        const auto t = std::chrono::steady_clock::now();
        query = embed_texts(context, {q.get<std::string>()});
        embed_ms = ms_since(t);
        if (all_zero(query))
            reject(400, "query", "field 'query' has no features for the embedder {} (all-zero embedding)",
                   context.backend.embedder_name);
    } else {
        query = get_embedding(body["embedding"], "embedding", kb.dim(), context.backend.embedder_name);
        if (all_zero(query)) reject(400, "embedding", "field 'embedding' is all zeros (no direction to search)");
    }

    const auto t = std::chrono::steady_clock::now();
    const auto hits = context.backend.retriever->search(query.data(), params);
    const double search_ms = ms_since(t);
    context.metrics.count_search(kb::search_mode_name(params.mode));

    json results = json::array();
    for (size_t i = 0; i < hits.size(); ++i) {
        const kb::Entry e = kb.entry(hits[i].id);
        results.push_back({{"rank", i},
                           {"id", e.id},
                           {"text", e.text},
                           {"dataset", e.dataset},
                           {"row", e.row},
                           {"score", hits[i].score},
                           {"similarity", hits[i].similarity}});
    }
    json out = {{"object", "search.result"},
                {"mode", kb::search_mode_name(params.mode)},
                {"k", params.k},
                {"candidates", std::min<int64_t>(params.candidates, kb.size())},
                {"lambda", params.lambda},
                // sift: σ² of the query after each pick (decreasing); faiss: |cos| (decreasing).
                {"score", params.mode == kb::SearchMode::sift ? "posterior_variance" : "abs_cosine"},
                {"results", std::move(results)},
                {"timing_ms", {{"embed", embed_ms}, {"search", search_ms}, {"total", ms_since(start)}}}};
    return json_response(200, out);
}

Response handle_embeddings(const Context & context, const Request & request) {
    const json body = parse_body_object(request);
    reject_unknown_fields(body, {"input", "model", "encoding_format", "user"});
    if (!body.contains("input")) reject(400, "input", "field 'input' is required (a string or an array of strings)");
    const json & input = body["input"];
    std::vector<std::string> texts;
    if (input.is_string()) {
        texts.push_back(input.get<std::string>());
    } else if (input.is_array()) {
        if (input.empty()) reject(400, "input", "field 'input' must not be an empty array");
        if (int64_t(input.size()) > context.options.max_embed_inputs)
            reject(400, "input", "field 'input' has {} texts; at most {} per request", input.size(),
                   context.options.max_embed_inputs);
        for (size_t i = 0; i < input.size(); ++i) {
            if (!input[i].is_string())
                reject(400, "input", "input[{}] must be a string (got {}; token arrays are not supported)", i,
                       json_type_name(input[i]));
            texts.push_back(input[i].get<std::string>());
        }
    } else {
        reject(400, "input", "field 'input' must be a string or an array of strings (got {})", json_type_name(input));
    }
    if (body.contains("model") && !body["model"].is_string())
        reject(400, "model", "field 'model' must be a string (got {})", json_type_name(body["model"]));
    if (body.contains("user") && !body["user"].is_string())
        reject(400, "user", "field 'user' must be a string (got {})", json_type_name(body["user"]));
    if (body.contains("encoding_format")) {
        const json & f = body["encoding_format"];
        if (!f.is_string() || f != "float")
            reject(400, "encoding_format", "field 'encoding_format' must be \"float\" (got {}; base64 is not supported)",
                   quote_for_message(dump_json(f), 32));
    }
    const int64_t dim = context.backend.kb->dim();
    const std::vector<float> vectors = embed_texts(context, texts);
    json data = json::array();
    for (size_t i = 0; i < texts.size(); ++i) {
        const float * row = vectors.data() + int64_t(i) * dim;
        data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::vector<float>(row, row + dim)}});
    }
    // The model is always the KB's embedder: a client naming another model still gets vectors
    // comparable with the KB, and the response says which model made them.
    json out = {{"object", "list"},
                {"data", std::move(data)},
                {"model", context.backend.embedder_name},
                {"usage", {{"prompt_tokens", 0}, {"total_tokens", 0}}}};
    return json_response(200, out);
}

}  // namespace ct3::server::detail
