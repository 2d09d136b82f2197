// The retrieval server's HTTP API as a pure function: Request in, Response out, no sockets.
//
// http_server.cpp moves bytes between cpp-httplib and Api::handle; tests and the fuzzer call
// handle() directly. handle() never throws: every failure becomes a JSON error envelope
//   {"error": {"code": <HTTP status>, "message": "...", "type": "...", "param"?: "<field>"}}
// with type invalid_request_error (400, 405, 413, 422), authentication_error (401),
// not_found_error (404), unavailable_error (503) or server_error (500).
// The one exception is POST /search/, the original CT3 wire format: its request errors use
// FastAPI's shapes, {"detail": "..."} (400, wrong dimension) and {"detail": [{"loc", "msg",
// "type"}]} (422, schema), because the original Python client reads `detail`.
//
// Routes (see README "Retrieval server" for the request/response fields):
//   POST /v1/search       k neighbours of a text or an embedding, by SIFT or plain FAISS
//   POST /search/         the original CT3 endpoint (also /search)
//   POST /v1/embeddings   OpenAI-shaped embeddings with the KB's embedder
//   GET  /v1/kb           manifest summary of the loaded KB
//   GET  /health          503 {"status":"loading"} until the KB is ready, then 200 (no auth)
//   GET  /metrics         Prometheus text (no auth)
// The KB arrives after construction (set_ready): the server listens while it loads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kb/retriever.h"

namespace ct3::kb {
class KnowledgeBase;
}

namespace ct3::server {

class ApiKey;
class Metrics;

struct Request {
    std::string method;  // "GET", "POST", ... ("HEAD" is answered like "GET")
    std::string path;    // without the query string
    std::string body;
    std::map<std::string, std::string> headers;  // names in lower case

    // The value of a header (name in lower case), "" when absent.
    std::string header(const std::string & lower_name) const;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Allow, WWW-Authenticate, ...)
};

// Texts -> [n, dim] embeddings, row-major. Called under Api's embed mutex: it need not be
// thread-safe (the KB's embedder is not).
using EmbedFn = std::function<std::vector<float>(const std::vector<std::string> & texts)>;

struct ApiOptions {
    // Bound of k and num_retrieved_samples. SIFT costs ~k·K·(d+k), so an unbounded k is a denial of
    // service; activeft itself requires N < K = 1000. Raise with --max_k (at most 10000).
    int64_t max_k = 1000;
    int64_t default_candidates = 1000;                // FAISS pre-selection size K (the original's 1000)
    kb::SearchMode default_mode = kb::SearchMode::sift;  // faiss with --only_faiss
    double default_lambda = 0.01;
    int64_t max_embed_inputs = 2048;                  // /v1/embeddings: texts per request
    int64_t max_body_bytes = 8 << 20;                 // larger bodies get 413 (the HTTP layer checks first)
};

// The error envelope as a Response (type derived from the status).
Response error_response(int status, const std::string & message, const std::string & param = {});
const char * error_type(int status);

class Api {
public:
    // `api_key`: when set, every route but /health and /metrics requires it.
    Api(ApiOptions options, Metrics & metrics, std::shared_ptr<const ApiKey> api_key = nullptr);
    ~Api();
    Api(const Api &) = delete;
    Api & operator=(const Api &) = delete;

    // Publishes the loaded KB. `kb` and `retriever` must outlive every handle() call; `embed` may be
    // empty (text queries and /v1/embeddings then answer 503). Call once.
    void set_ready(kb::KnowledgeBase & kb, kb::Retriever & retriever, EmbedFn embed);
    bool ready() const;

    Response handle(const Request & request) noexcept;

    // The metrics label of a path: its route ("/v1/search", "/search/", ...) or "other".
    static std::string endpoint_label(const std::string & path);

    const ApiOptions & options() const { return options_; }

private:
    struct Backend;
    struct Impl;

    ApiOptions options_;
    Metrics & metrics_;
    std::shared_ptr<const ApiKey> api_key_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ct3::server
