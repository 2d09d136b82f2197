#include "server/api.h"

#include <atomic>
#include <chrono>

#include <faiss/Index.h>

#include "kb/knowledge_base.h"
#include "models/error.h"
#include "models/log.h"
#include "models/strict_json.h"
#include "server/api_detail.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace ct3::server {

using nlohmann::json;

std::string Request::header(const std::string & lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
}

const char * error_type(int status) {
    switch (status) {
        case 401: return "authentication_error";
        case 404: return "not_found_error";
        case 503: return "unavailable_error";
        default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

Response error_response(int status, const std::string & message, const std::string & param) {
    json error = {{"code", status}, {"message", message}, {"type", error_type(status)}};
    if (!param.empty()) error["param"] = param;
    return detail::json_response(status, json{{"error", std::move(error)}});
}

namespace detail {

std::string dump_json(const json & value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

Response json_response(int status, const json & value) {
    Response r;
    r.status = status;
    r.body = dump_json(value);
    return r;
}

Response json_response(int status, const nlohmann::ordered_json & value) {
    Response r;
    r.status = status;
    r.body = value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    return r;
}

std::string quote_for_message(const std::string & text, size_t max_chars) {
    std::string out;
    for (size_t i = 0; i < text.size() && i < max_chars; ++i) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        out += (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
    }
    if (text.size() > max_chars) out += "...";
    return out;
}

const char * json_type_name(const json & value) {
    switch (value.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "object";
        case json::value_t::array: return "array";
        case json::value_t::string: return "string";
        case json::value_t::boolean: return "boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "integer";
        case json::value_t::number_float: return "number";
        default: return "unknown";
    }
}

json parse_body_object(const Request & request) {
    json body;
    try {
        body = parse_strict_json(request.body, "request body", 16);
    } catch (const Error & e) {
        throw HttpError(400, e.message());
    }
    if (!body.is_object()) reject(400, "", "request body must be a JSON object (got {})", json_type_name(body));
    return body;
}

std::vector<float> embed_texts(const Context & context, const std::vector<std::string> & texts) {
    if (!context.backend.embed)
        reject(503, "", "this server has no embedder for its knowledge base; send an embedding instead of text");
    std::vector<float> out;
    {
        std::lock_guard<std::mutex> lock(context.embed_mutex);
        out = context.backend.embed(texts);
    }
    CT3_ASSERT(int64_t(out.size()) == int64_t(texts.size()) * context.backend.kb->dim());
    context.metrics.count_embedded(int64_t(texts.size()));
    return out;
}

}  // namespace detail

namespace {

enum class Route { v1_search, original_search, embeddings, kb_info, health, metrics, none };

struct RouteInfo {
    Route route;
    const char * label;
    const char * method;  // the one method the route answers
};

RouteInfo find_route(const std::string & path) {
    if (path == "/v1/search") return {Route::v1_search, "/v1/search", "POST"};
    if (path == "/search/" || path == "/search") return {Route::original_search, "/search/", "POST"};
    if (path == "/v1/embeddings") return {Route::embeddings, "/v1/embeddings", "POST"};
    if (path == "/v1/kb") return {Route::kb_info, "/v1/kb", "GET"};
    if (path == "/health") return {Route::health, "/health", "GET"};
    if (path == "/metrics") return {Route::metrics, "/metrics", "GET"};
    return {Route::none, "other", ""};
}

std::string embedder_name(const json & identity) {
    if (identity.is_object()) {
        for (const char * key : {"name", "type"})
            if (identity.contains(key) && identity[key].is_string()) return identity[key].get<std::string>();
    }
    return "unknown";
}

std::string index_name(const kb::KnowledgeBase & kb) {
    const json & manifest = kb.manifest();
    if (manifest.is_object() && manifest.contains("index") && manifest["index"].is_object() &&
        manifest["index"].contains("factory") && manifest["index"]["factory"].is_string())
        return manifest["index"]["factory"].get<std::string>();
    return "unknown";
}

}  // namespace

struct Api::Impl {
    std::shared_ptr<const detail::Backend> backend;  // null while loading; read with atomic_load
    std::mutex embed_mutex;
};

Api::Api(ApiOptions options, Metrics & metrics, std::shared_ptr<const ApiKey> api_key)
    : options_(options), metrics_(metrics), api_key_(std::move(api_key)), impl_(std::make_unique<Impl>()) {
    CT3_CHECK(options_.max_k >= 1, ErrorKind::invalid_argument, "--max_k must be >= 1 (got {})", options_.max_k);
    CT3_CHECK(options_.default_candidates >= 1 && options_.default_candidates <= 100000, ErrorKind::invalid_argument,
              "--candidates must be between 1 and 100000 (got {})", options_.default_candidates);
    CT3_CHECK(options_.max_embed_inputs >= 1, ErrorKind::invalid_argument, "max_embed_inputs must be >= 1 (got {})",
              options_.max_embed_inputs);
}

Api::~Api() = default;

void Api::set_ready(kb::KnowledgeBase & kb, kb::Retriever & retriever, EmbedFn embed) {
    auto backend = std::make_shared<detail::Backend>();
    backend->kb = &kb;
    backend->retriever = &retriever;
    backend->embed = std::move(embed);
    backend->embedder_name = embedder_name(kb.embedder_identity());
    metrics_.set_kb(kb.size(), kb.dim());
    std::atomic_store(&impl_->backend, std::shared_ptr<const detail::Backend>(std::move(backend)));
}

bool Api::ready() const { return std::atomic_load(&impl_->backend) != nullptr; }

std::string Api::endpoint_label(const std::string & path) { return find_route(path).label; }

Response Api::handle(const Request & request) noexcept {
    const auto start = std::chrono::steady_clock::now();
    const RouteInfo info = find_route(request.path);
    Response response;
    try {
        const std::string method = request.method == "HEAD" ? "GET" : request.method;
        const bool open_route = info.route == Route::health || info.route == Route::metrics;
        if (api_key_ && !open_route &&
            !api_key_->accepts(request.header("authorization"), request.header("x-api-key"))) {
            const bool presented = !request.header("authorization").empty() || !request.header("x-api-key").empty();
            response = error_response(401, presented ? "invalid API key"
                                                     : "missing API key (send 'Authorization: Bearer KEY' or "
                                                       "'X-API-Key: KEY')");
            response.headers.emplace_back("WWW-Authenticate", "Bearer");
        } else if (info.route == Route::none) {
            response = error_response(404, fmt::format("no route for {} {} (routes: POST /v1/search, POST /search/, "
                                                       "POST /v1/embeddings, GET /v1/kb, GET /health, GET /metrics)",
                                                       detail::quote_for_message(request.method, 16),
                                                       detail::quote_for_message(request.path)));
        } else if (method != info.method) {
            response = error_response(405, fmt::format("{} does not accept {} (use {})", info.label,
                                                       detail::quote_for_message(request.method, 16), info.method));
            response.headers.emplace_back("Allow", info.method);
        } else if (int64_t(request.body.size()) > options_.max_body_bytes) {
            response = error_response(413, fmt::format("request body has {} bytes; the limit is {} (--max_body_bytes)",
                                                       request.body.size(), options_.max_body_bytes));
        } else {
            const std::shared_ptr<const detail::Backend> backend = std::atomic_load(&impl_->backend);
            if (info.route == Route::metrics) {
                response.content_type = "text/plain; version=0.0.4; charset=utf-8";
                response.body = metrics_.render();
            } else if (info.route == Route::health) {
                if (!backend) {
                    response = detail::json_response(503, json{{"status", "loading"}});
                    response.headers.emplace_back("Retry-After", "1");
                } else {
                    const kb::KnowledgeBase & kb = *backend->kb;
                    response = detail::json_response(200, json{{"status", "ok"},
                                                                {"kb",
                                                                 {{"count", kb.size()},
                                                                  {"dim", kb.dim()},
                                                                  {"embedder", backend->embedder_name},
                                                                  {"index", index_name(kb)}}}});
                }
            } else if (!backend) {
                response = error_response(503, "the knowledge base is still loading; retry when GET /health says ok");
                response.headers.emplace_back("Retry-After", "1");
            } else {
                detail::Context context{options_, metrics_, *backend, impl_->embed_mutex};
                switch (info.route) {
                    case Route::v1_search: response = detail::handle_v1_search(context, request); break;
                    case Route::original_search: response = detail::handle_original_search(context, request); break;
                    case Route::embeddings: response = detail::handle_embeddings(context, request); break;
                    case Route::kb_info: {
                        const kb::KnowledgeBase & kb = *backend->kb;
                        const json & manifest = kb.manifest();
                        json summary = {{"object", "knowledge_base"},
                                        {"count", kb.size()},
                                        {"dim", kb.dim()},
                                        {"metric", "inner_product"},
                                        {"embedder", kb.embedder_identity()},
                                        {"index", index_name(kb)}};
                        if (manifest.is_object())
                            for (const char * key : {"format_version", "created", "ct3_version", "index", "datasets",
                                                     "duplicates"})
                                if (manifest.contains(key)) summary[key] = manifest[key];
                        response = detail::json_response(200, summary);
                        break;
                    }
                    default: CT3_ASSERT(false);
                }
            }
        }
    } catch (const detail::HttpError & e) {
        response = error_response(e.status, e.message, e.param);
        if (e.status == 503) response.headers.emplace_back("Retry-After", "1");
    } catch (const Error & e) {
        // Errors of the layers below: the KB, the retriever, the embedder.
        const int status = e.kind() == ErrorKind::invalid_argument ? 400
                           : e.kind() == ErrorKind::unavailable    ? 503
                                                                   : 500;
        if (status == 500) logger("server")->error("{} {}: {}", request.method, info.label, e.what());
        response = error_response(status, e.what());
    } catch (const std::exception & e) {
        logger("server")->error("{} {}: internal error: {}", request.method, info.label, e.what());
        response = error_response(500, fmt::format("internal error: {}", e.what()));
    } catch (...) {
        logger("server")->error("{} {}: internal error (unknown exception)", request.method, info.label);
        response = error_response(500, "internal error");
    }
    try {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        metrics_.observe_request(info.label, response.status, seconds);
    } catch (...) {
        // Counting must not turn a response into a crash (only std::bad_alloc can get here).
    }
    return response;
}

}  // namespace ct3::server
