// HttpServer: cpp-httplib transport in front of Api::handle.
//
// Every method and path goes to Api::handle, which does routing, 404 and 405 itself, so the
// transport adds only what needs the socket: a pool of `threads` workers (one connection each), a
// body limit (a larger Content-Length is refused with 413 before the body is read), read/write
// timeouts, an error envelope for the transport's own errors (400 malformed request, 413, 414),
// an exception handler (500, the server never dies), and an access log at debug level.
//
// Shutdown: stop() closes the listening socket, so no new connection is accepted; run() then
// joins the worker pool, which finishes the requests being handled (each gets its full response)
// before run() returns. A connection accepted but not yet picked up by a worker is closed without
// a response; an idle keep-alive connection is closed after its current request.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "server/api.h"

namespace ct3::server {

struct HttpOptions {
    std::string host = "127.0.0.1";
    int port = 8000;                  // 0: any free port (bind() returns it)
    int threads = 0;                  // worker threads; 0: default_http_threads()
    int64_t max_body_bytes = 8 << 20; // 413 above this
    int read_timeout_s = 30;
    int write_timeout_s = 30;
    int keep_alive_timeout_s = 5;
    // Test hook: runs on the worker thread just before Api::handle (e.g. to hold a request in flight).
    std::function<void(const Request &)> before_handle;
};

class HttpServer {
public:
    HttpServer(Api & api, Metrics & metrics, HttpOptions options);
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer & operator=(const HttpServer &) = delete;

    // Binds the listening socket; returns the port (the chosen one when options.port is 0).
    // Throws ct3::Error (io) naming host and port when binding fails.
    int bind();
    // Serves until stop(); returns once the in-flight requests have been answered.
    void run();
    // Stops accepting and lets run() drain. Thread-safe, idempotent, callable before run() starts.
    void stop();

    int64_t in_flight() const;
    // Requests that were in flight when stop() was called (all answered once run() returned).
    int64_t drained() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Default worker count: 4 per core, at least 16. A cpp-httplib worker holds its connection for
// the connection's life, so workers bound concurrent clients, not CPU use: searches beyond the
// cores wait in the Retriever's batch queue (and share FAISS calls) instead of in the accept queue.
int default_http_threads();

}  // namespace ct3::server
