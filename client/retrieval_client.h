// RetrievalClient: the TTT client's side of ct3-server's HTTP API (README "Retrieval server").
//
//   POST /v1/embeddings  a text -> the KB embedder's unit vector (for the adapter cache's key)
//   POST /v1/search      k neighbours of a text or an embedding, by SIFT or plain FAISS
//   GET  /v1/kb          the KB's size, dimension and embedder identity
//   GET  /health         200 once the KB is loaded
//
// Failure handling (issue 4, "Client program"): transport errors (refused, reset, timeouts), 429
// and 5xx (503 while the server loads its KB) are retried up to `max_attempts` times with
// exponential backoff and jitter, honouring Retry-After up to `backoff_max_s`; then ct3::Error
// `unavailable` naming the URL, the attempts and the last error. A 4xx other than 429 is the
// request's fault and is not retried: `invalid_argument` with the server's own message. A reply
// that is not what the API promises (not JSON, a missing or mistyped field, more than k results,
// ranks out of order, non-finite numbers, a dimension that changed) is `bad_format` naming the
// endpoint and the field, never passed on to training.
//
// Thread-safe: concurrent calls each borrow a connection from a small pool (keep-alive), so calls
// never share a socket. No torch in this header.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/neighbour_source.h"

namespace ct3::client {

struct RetrievalClientOptions {
    std::string server_url = "http://127.0.0.1:8000";  // --server: http://host[:port][/prefix]
    std::string api_key;                               // sent as "Authorization: Bearer KEY" when non-empty
    double connect_timeout_s = 5.0;                    // per attempt
    double read_timeout_s = 60.0;                      // per attempt: longest silence while reading the reply
    int max_attempts = 4;                              // attempts for transport errors, 429 and 5xx
    double backoff_initial_s = 0.25;                   // wait before the 2nd attempt; doubles each retry
    double backoff_max_s = 4.0;                        // cap of one wait (Retry-After included)
};

class RetrievalClient : public NeighbourSource {
public:
    // Validates the options; a malformed URL (scheme, host, port) throws invalid_argument naming
    // --server, other bad values name their flag. Does not contact the server.
    explicit RetrievalClient(RetrievalClientOptions options);
    ~RetrievalClient() override;
    RetrievalClient(const RetrievalClient &) = delete;
    RetrievalClient & operator=(const RetrievalClient &) = delete;

    // The KB embedder's vector of `text` (unit length; the server's own bits when it already is).
    // A text without features for the embedder (all-zero vector) throws invalid_argument.
    std::vector<float> embed(const std::string & text) override;

    // The server's neighbours for the request, validated (see the file comment).
    std::vector<Neighbour> search(const SearchRequest & request) override;

    KbInfo kb_info() override;
    std::string describe() const override { return base_url(); }

    // GET /health answers 200: one attempt, no retries, never throws for a server that is down.
    bool healthy();

    const RetrievalClientOptions & options() const;
    // The server URL as used ("http://host:port/prefix", no trailing slash): for messages.
    const std::string & base_url() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ct3::client
