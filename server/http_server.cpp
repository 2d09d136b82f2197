#include "server/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include "models/error.h"
#include "models/log.h"
#include "server/metrics.h"

namespace ct3::server {

namespace {

// httplib::Server::stop() does nothing until listen has set is_running_, so a stop() that races
// with run()'s start would be lost. Closing the listening socket directly (as stop() itself does)
// works at any time: the accept loop exits as soon as it sees the socket gone.
class StoppableServer : public httplib::Server {
public:
    void close_listener() {
        const socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
        if (sock != INVALID_SOCKET) {
            ::shutdown(sock, SHUT_RDWR);
            ::close(sock);
        }
    }
};

std::string transport_error_message(int status, int64_t max_body_bytes) {
    switch (status) {
        case 400: return "malformed HTTP request";
        case 413: return fmt::format("request body exceeds the limit of {} bytes (--max_body_bytes)", max_body_bytes);
        case 414: return "request URI too long";
        default: return fmt::format("HTTP error {}", status);
    }
}

}  // namespace

struct HttpServer::Impl {
    Api & api;
    Metrics & metrics;
    HttpOptions options;
    StoppableServer server;
    std::atomic<int64_t> in_flight{0};
    std::atomic<int64_t> drained{-1};
    std::atomic<bool> stopped{false};
    int port = -1;

    Impl(Api & api_, Metrics & metrics_, HttpOptions options_)
        : api(api_), metrics(metrics_), options(std::move(options_)) {
        CT3_CHECK(options.max_body_bytes >= 1, ErrorKind::invalid_argument, "--max_body_bytes must be >= 1 (got {})",
                  options.max_body_bytes);
        CT3_CHECK(options.threads >= 0, ErrorKind::invalid_argument, "--threads must be >= 0 (got {})",
                  options.threads);
        const size_t threads = options.threads > 0 ? size_t(options.threads) : default_http_threads();
        server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
        server.set_payload_max_length(size_t(options.max_body_bytes));
        server.set_read_timeout(options.read_timeout_s, 0);
        server.set_write_timeout(options.write_timeout_s, 0);
        server.set_keep_alive_timeout(options.keep_alive_timeout_s);
        // httplib writes headers and body separately; with Nagle on, the body waits for the client's
        // delayed ACK (~40 ms per request on a keep-alive connection).
        server.set_tcp_nodelay(true);
        // httplib closes a keep-alive connection after 5 requests by default; reconnecting costs a
        // worker hand-off and a TCP handshake per 5 searches. nginx's upstream default is 1000.
        server.set_keep_alive_max_count(1000);

        const httplib::Server::Handler handler = [this](const httplib::Request & req, httplib::Response & res) {
            serve(req, res);
        };
        const std::string any = ".*";
        server.Get(any, handler);
        server.Post(any, handler);
        server.Put(any, handler);
        server.Patch(any, handler);
        server.Delete(any, handler);
        server.Options(any, handler);

        // The transport's own errors (bad request line, body too large, ...) reach here with an empty
        // body; responses from Api already carry their envelope and are left alone.
        server.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request & req,
                                                                             httplib::Response & res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            const Response r = error_response(res.status, transport_error_message(res.status, options.max_body_bytes));
            res.set_content(r.body, r.content_type.c_str());
            metrics.observe_request(Api::endpoint_label(req.path), res.status, 0.0);
            return httplib::Server::HandlerResponse::Handled;
        }));
        server.set_exception_handler([this](const httplib::Request & req, httplib::Response & res,
                                            std::exception_ptr ep) {
            std::string what = "unknown exception";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception & e) {
                what = e.what();
            } catch (...) {
            }
            logger("server")->error("{} {}: unhandled exception: {}", req.method, req.path, what);
            const Response r = error_response(500, "internal error");
            res.status = 500;
            res.set_content(r.body, r.content_type.c_str());
        });
        server.set_logger([](const httplib::Request & req, const httplib::Response & res) {
            logger("server")->debug("{} {} {} -> {} ({} bytes in, {} out)", req.remote_addr, req.method, req.path,
                                    res.status, req.body.size(), res.body.size());
        });
    }

    void serve(const httplib::Request & req, httplib::Response & res) {
        in_flight.fetch_add(1);
        struct Leave {
            std::atomic<int64_t> & n;
            ~Leave() { n.fetch_sub(1); }
        } leave{in_flight};
        Request request;
        request.method = req.method;
        request.path = req.path;
        request.body = req.body;
        for (const auto & [name, value] : req.headers) {
            std::string lower = name;
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char c) { return char(std::tolower(c)); });
            request.headers.emplace(std::move(lower), value);  // the first of repeated headers wins
        }
        if (options.before_handle) options.before_handle(request);
        const Response response = api.handle(request);
        res.status = response.status;
        for (const auto & [name, value] : response.headers) res.set_header(name.c_str(), value);
        res.set_content(response.body, response.content_type.c_str());
    }
};

HttpServer::HttpServer(Api & api, Metrics & metrics, HttpOptions options)
    : impl_(std::make_unique<Impl>(api, metrics, std::move(options))) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
    const auto & o = impl_->options;
    int port = -1;
    if (o.port == 0) {
        port = impl_->server.bind_to_any_port(o.host);
    } else if (impl_->server.bind_to_port(o.host, o.port)) {
        port = o.port;
    }
    if (port <= 0)
        fail_hint(ErrorKind::io, "is another server running there? pick another --port, or 0 for any free port",
                  "cannot listen on {}:{}", o.host, o.port);
    impl_->port = port;
    return port;
}

void HttpServer::run() {
    CT3_CHECK(impl_->port > 0, ErrorKind::internal, "HttpServer::run() before bind()");
    if (!impl_->stopped.load()) impl_->server.listen_after_bind();  // joins the worker pool on return
    logger("server")->info("stopped: drained {} in-flight request(s)", std::max<int64_t>(0, impl_->drained.load()));
}

void HttpServer::stop() {
    if (impl_->stopped.exchange(true)) return;
    impl_->drained.store(impl_->in_flight.load());
    impl_->server.close_listener();
}

int64_t HttpServer::in_flight() const { return impl_->in_flight.load(); }

int64_t HttpServer::drained() const { return std::max<int64_t>(0, impl_->drained.load()); }

int default_http_threads() {
    return int(std::max<unsigned>(16, 4 * std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace ct3::server
