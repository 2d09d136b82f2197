// POST /search/: the original CT3 server's wire format (ct3_original.md §2.2), so the original
// Python client works against this server unchanged.
//   request  {"id": ignored, "query_embedding": [[d floats]] (or flat [d]), "num_retrieved_samples": n}
//            other fields are ignored, as pydantic does by default
//   response {"retrieved_samples": {"<text>": score, ...}} in selection order
// The response is keyed by text, like the original's Python dict: a text selected twice (SIFT may
// re-pick an entry; two KB entries may share a text) keeps the position of its first selection
// and the score of its last. Scores: sift = posterior variance σ² after the pick, faiss = |cos|.
// Errors use FastAPI's shapes: a wrong dimension is 400 {"detail": "<message>"} as the original's
// HTTPException; schema problems are 422 {"detail": [{"loc": [...], "msg", "type"}]} as FastAPI's
// request validation.
#include <cmath>

#include "kb/knowledge_base.h"
#include "models/error.h"
#include "models/strict_json.h"
#include "server/api_detail.h"
#include "server/metrics.h"

namespace ct3::server::detail {

using nlohmann::json;

namespace {

struct FastApiError {
    int status;
    json detail;
};

[[noreturn]] void validation_error(const std::string & field, const std::string & message, const std::string & type) {
    json loc = json::array({"body"});
    if (!field.empty()) loc.push_back(field);
    throw FastApiError{422, json::array({{{"loc", loc}, {"msg", message}, {"type", type}}})};
}

std::vector<float> parse_query_embedding(const json & v, int64_t dim, const std::string & embedder) {
    if (!v.is_array()) validation_error("query_embedding", "value is not a valid list", "type_error.list");
    // docarray serialises the client's (1, d) tensor as [[...]]; a flat [...] is accepted too.
    const json * row = &v;
    if (!v.empty() && v[0].is_array()) {
        if (v.size() != 1)
            validation_error("query_embedding",
                             fmt::format("expected one embedding of shape [1, {}] (got {} rows)", dim, v.size()),
                             "value_error.shape");
        row = &v[0];
    }
    if (int64_t(row->size()) != dim)
        throw FastApiError{400, fmt::format("Query embedding dimension {} does not match the required dimension {} "
                                            "of the embedding model {}",
                                            row->size(), dim, embedder)};
    std::vector<float> out(row->size());
    for (size_t i = 0; i < row->size(); ++i) {
        const json & x = (*row)[i];
        if (!x.is_number()) validation_error("query_embedding", "value is not a valid float", "type_error.float");
        out[i] = static_cast<float>(x.get<double>());
        if (!std::isfinite(out[i]))
            validation_error("query_embedding", fmt::format("component {} is not a finite float32", i),
                             "value_error.float");
    }
    return out;
}

int64_t parse_num_samples(const json & body, int64_t max_k) {
    if (!body.contains("num_retrieved_samples")) validation_error("num_retrieved_samples", "field required",
                                                                  "value_error.missing");
    const json & v = body["num_retrieved_samples"];
    // pydantic's int accepts integral floats (8.0) and rejects 8.5, strings of numbers aside.
    double value = 0;
    if (v.is_number_integer()) {
        value = v.is_number_unsigned() ? double(v.get<uint64_t>()) : double(v.get<int64_t>());
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>()) {
        value = v.get<double>();
    } else {
        validation_error("num_retrieved_samples", "value is not a valid integer", "type_error.integer");
    }
    if (value < 1 || value > double(max_k))
        validation_error("num_retrieved_samples", fmt::format("ensure this value is between 1 and {}", max_k),
                         "value_error.number.not_in_range");
    return int64_t(value);
}

}  // namespace

Response handle_original_search(const Context & context, const Request & request) {
    const kb::KnowledgeBase & kb = *context.backend.kb;
    try {
        json body;
        try {
            body = parse_strict_json(request.body, "request body", 16);
        } catch (const Error & e) {
            validation_error("", e.message(), "value_error.jsondecode");
        }
        if (!body.is_object()) validation_error("", "value is not a valid dict", "type_error.dict");
        if (!body.contains("query_embedding"))
            validation_error("query_embedding", "field required", "value_error.missing");
        const int64_t n = parse_num_samples(body, context.options.max_k);
        const std::vector<float> query =
            parse_query_embedding(body["query_embedding"], kb.dim(), context.backend.embedder_name);

        kb::SearchParams params;
        params.k = n;
        params.mode = context.options.default_mode;
        params.candidates = context.options.default_candidates;
        params.lambda = context.options.default_lambda;
        std::vector<kb::Hit> hits;
        try {
            hits = context.backend.retriever->search(query.data(), params);
        } catch (const Error & e) {
            if (e.kind() != ErrorKind::invalid_argument) throw;
            throw FastApiError{400, e.message()};  // e.g. an all-zero embedding
        }
        context.metrics.count_search(kb::search_mode_name(params.mode));
        nlohmann::ordered_json samples = nlohmann::ordered_json::object();
        for (const kb::Hit & h : hits) samples[kb.text(h.id)] = std::abs(h.score);
        nlohmann::ordered_json out;
        out["retrieved_samples"] = std::move(samples);
        return json_response(200, out);
    } catch (const FastApiError & e) {
        return json_response(e.status, json{{"detail", e.detail}});
    }
}

}  // namespace ct3::server::detail
