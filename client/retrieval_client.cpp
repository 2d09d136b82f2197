#include "client/retrieval_client.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "models/error.h"
#include "models/log.h"
#include "models/strict_json.h"

namespace ct3::client {

using nlohmann::json;

namespace {

constexpr size_t kMaxIdleConnections = 8;  // kept-alive sockets; more concurrent calls open extra ones

struct ServerUrl {
    std::string origin;  // "http://host:port", what httplib::Client takes
    std::string prefix;  // "" or "/some/prefix" (no trailing slash)
};

[[noreturn]] void bad_url(const std::string & url, const std::string & why) {
    fail_hint(ErrorKind::invalid_argument, "write it as http://HOST:PORT, e.g. http://127.0.0.1:8000",
              "--server '{}' is not a valid server URL: {}", url, why);
}

// http://host[:port][/prefix]; host is a name, an IPv4 address or a bracketed IPv6 address.
ServerUrl parse_server_url(const std::string & url) {
    const size_t sep = url.find("://");
    if (sep == std::string::npos) bad_url(url, "no scheme (expected http://)");
    const std::string scheme = url.substr(0, sep);
    if (scheme != "http" && scheme != "https") bad_url(url, fmt::format("scheme '{}' (expected http)", scheme));
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
    if (scheme == "https")
        fail_hint(ErrorKind::unsupported, "use http://, or put a TLS proxy on the client's machine",
                  "--server '{}': this build's cpp-httplib has no TLS support", url);
#endif
    const size_t host_begin = sep + 3;
    size_t authority_end = url.find_first_of("/?#", host_begin);
    if (authority_end == std::string::npos) authority_end = url.size();
    const std::string authority = url.substr(host_begin, authority_end - host_begin);
    if (authority.find('@') != std::string::npos) bad_url(url, "user information ('user@') is not supported");
    std::string host, port_text;
    if (!authority.empty() && authority[0] == '[') {
        const size_t close = authority.find(']');
        if (close == std::string::npos) bad_url(url, "unterminated IPv6 address '['");
        host = authority.substr(0, close + 1);
        const std::string rest = authority.substr(close + 1);
        if (!rest.empty() && rest[0] != ':') bad_url(url, fmt::format("unexpected '{}' after the IPv6 address", rest));
        if (!rest.empty()) port_text = rest.substr(1);
        for (size_t i = 1; i < close; ++i)
            if (!std::isxdigit(static_cast<unsigned char>(host[i])) && host[i] != ':' && host[i] != '.')
                bad_url(url, fmt::format("'{}' is not an IPv6 address", host));
        if (close == 1) bad_url(url, "empty IPv6 address");
    } else {
        const size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string::npos) port_text = authority.substr(colon + 1);
        for (unsigned char c : host)
            if (!std::isalnum(c) && c != '.' && c != '-' && c != '_')
                bad_url(url, fmt::format("host '{}' has the character '{}'", host, char(c)));
    }
    if (host.empty()) bad_url(url, "no host");
    int port = scheme == "https" ? 443 : 80;
    if (authority.find(':', host.size()) != std::string::npos) {
        if (port_text.empty() || port_text.size() > 5 ||
            !std::all_of(port_text.begin(), port_text.end(), [](unsigned char c) { return std::isdigit(c); }))
            bad_url(url, fmt::format("port '{}' is not a number", port_text));
        port = std::stoi(port_text);
        if (port < 1 || port > 65535) bad_url(url, fmt::format("port {} is not between 1 and 65535", port));
    }
    std::string prefix = url.substr(authority_end);
    if (prefix.find_first_of("?#") != std::string::npos) bad_url(url, "a query ('?') or fragment ('#') is not allowed");
    for (unsigned char c : prefix)
        if (c <= 0x20 || c >= 0x7f) bad_url(url, "the path has a space or a non-ASCII character");
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    return {fmt::format("{}://{}:{}", scheme, host, port), prefix};
}

void check_seconds(double value, const char * flag, bool allow_zero) {
    CT3_CHECK(std::isfinite(value) && (allow_zero ? value >= 0 : value > 0), ErrorKind::invalid_argument,
              "{} must be a {} number of seconds (got {})", flag, allow_zero ? "non-negative" : "positive", value);
}

// Seconds as httplib's (sec, usec) pair.
std::pair<time_t, time_t> split_seconds(double s) {
    const auto us = static_cast<int64_t>(std::llround(s * 1e6));
    return {time_t(us / 1000000), time_t(us % 1000000)};
}

std::string transport_error_text(httplib::Error error, const RetrievalClientOptions & o) {
    const std::string name = httplib::to_string(error);
    switch (error) {
        case httplib::Error::Connection:
            return name + " (connection refused or host unreachable)";
        case httplib::Error::ConnectionTimeout:
            return fmt::format("{} (no connection within --server_timeout's connect limit of {} s)", name,
                               o.connect_timeout_s);
        case httplib::Error::Read:
            return fmt::format("{} (the connection failed or the reply took longer than the read timeout of {} s)",
                               name, o.read_timeout_s);
        case httplib::Error::Write:
            return name + " (sending the request failed)";
        default:
            return name;
    }
}

// The message of an error reply: ct3-server's envelope {"error": {"message", "param"}}, FastAPI's
// {"detail": "..."}, or the start of the body.
std::string reply_error_message(const std::string & body) {
    try {
        const json j = json::parse(body);
        if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
            j["error"]["message"].is_string()) {
            std::string message = j["error"]["message"].get<std::string>();
            if (j["error"].contains("param") && j["error"]["param"].is_string() && !j["error"]["param"].empty())
                message = fmt::format("field '{}': {}", j["error"]["param"].get<std::string>(), message);
            return message;
        }
        if (j.is_object() && j.contains("detail") && j["detail"].is_string()) return j["detail"].get<std::string>();
    } catch (const std::exception &) {
        // Not JSON: a proxy's page, say. Quote its beginning.
    }
    std::string text = body.substr(0, 200);
    for (char & c : text)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return text.empty() ? "(empty body)" : "'" + text + (body.size() > 200 ? "...'" : "'");
}

// Retry-After in delta-seconds (HTTP-dates are not worth parsing here: ct3-server sends seconds).
std::optional<double> retry_after_seconds(const httplib::Response & r) {
    if (!r.has_header("Retry-After")) return std::nullopt;
    const std::string v = r.get_header_value("Retry-After");
    if (v.empty() || v.size() > 6 || !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); }))
        return std::nullopt;
    return double(std::stoi(v));
}

double jittered_backoff(const RetrievalClientOptions & o, int retry) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const double base = std::min(o.backoff_max_s, o.backoff_initial_s * std::pow(2.0, retry - 1));
    // "Equal jitter": at least half the exponential wait, so retries still spread out, and clients
    // that failed together do not come back together.
    return base / 2 + std::uniform_real_distribution<double>(0, base / 2)(rng);
}

// --- reply validation: every failure names the endpoint and the field ------------------------------

[[noreturn]] void bad_reply(const std::string & endpoint, const std::string & field, const std::string & what) {
    fail(ErrorKind::bad_format, "invalid reply from ct3-server to {}: field '{}' {}", endpoint, field, what);
}

const char * type_name(const json & v) {
    switch (v.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::object:
            return "an object";
        case json::value_t::array:
            return "an array";
        case json::value_t::string:
            return "a string";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "an integer";
        case json::value_t::number_float:
            return "a number";
        default:
            return "a value of unknown type";
    }
}

const json & member(const json & object, const char * key, const std::string & endpoint, const std::string & path) {
    if (!object.is_object()) bad_reply(endpoint, path, fmt::format("must be an object (got {})", type_name(object)));
    auto it = object.find(key);
    const std::string field = path.empty() ? key : path + "." + key;
    if (it == object.end()) bad_reply(endpoint, field, "is missing");
    return *it;
}

int64_t get_int(const json & object, const char * key, const std::string & endpoint, const std::string & path,
                int64_t lo) {
    const json & v = member(object, key, endpoint, path);
    const std::string field = path.empty() ? key : path + "." + key;
    if (!v.is_number_integer()) bad_reply(endpoint, field, fmt::format("must be an integer (got {})", type_name(v)));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
        bad_reply(endpoint, field, "is out of range");
    const int64_t value = v.get<int64_t>();
    if (value < lo) bad_reply(endpoint, field, fmt::format("must be >= {} (got {})", lo, value));
    return value;
}

double get_number(const json & object, const char * key, const std::string & endpoint, const std::string & path) {
    const json & v = member(object, key, endpoint, path);
    const std::string field = path.empty() ? key : path + "." + key;
    if (!v.is_number()) bad_reply(endpoint, field, fmt::format("must be a number (got {})", type_name(v)));
    const double value = v.get<double>();
    if (!std::isfinite(value)) bad_reply(endpoint, field, "must be finite");
    return value;
}

std::string get_string(const json & object, const char * key, const std::string & endpoint, const std::string & path) {
    const json & v = member(object, key, endpoint, path);
    if (!v.is_string())
        bad_reply(endpoint, path.empty() ? key : path + "." + key,
                  fmt::format("must be a string (got {})", type_name(v)));
    return v.get<std::string>();
}

}  // namespace

struct RetrievalClient::Impl {
    RetrievalClientOptions options;
    ServerUrl url;
    std::string base_url;
    std::mutex pool_mutex;
    std::vector<std::unique_ptr<httplib::Client>> idle;  // kept-alive connections, guarded by pool_mutex
    std::atomic<int64_t> dim{0};  // the KB's dimension once a reply told it: later replies must agree

    std::unique_ptr<httplib::Client> acquire() {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            if (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                return c;
            }
        }
        auto c = std::make_unique<httplib::Client>(url.origin);
        CT3_CHECK(c->is_valid(), ErrorKind::invalid_argument, "--server '{}': cpp-httplib rejects '{}'",
                  options.server_url, url.origin);
        const auto connect = split_seconds(options.connect_timeout_s), read = split_seconds(options.read_timeout_s);
        c->set_connection_timeout(connect.first, connect.second);
        c->set_read_timeout(read.first, read.second);
        c->set_write_timeout(read.first, read.second);
        c->set_keep_alive(true);
        c->set_follow_location(false);
        if (!options.api_key.empty()) c->set_bearer_token_auth(options.api_key);
        return c;
    }

    // Only connections whose last exchange succeeded go back: a failed one may be half-read.
    void release(std::unique_ptr<httplib::Client> c) {
        std::lock_guard<std::mutex> lock(pool_mutex);
        if (idle.size() < kMaxIdleConnections) idle.push_back(std::move(c));
    }

    // One request with retries; returns the 2xx body or throws (see the header).
    std::string call(const char * method, const std::string & route, const std::string & body, bool retry) {
        const std::string path = url.prefix + route;
        const std::string endpoint = fmt::format("{} {}", method, route);
        const int attempts = retry ? options.max_attempts : 1;
        std::string last_error;
        for (int attempt = 1;; ++attempt) {
            auto c = acquire();
            httplib::Result r =
                std::string(method) == "GET" ? c->Get(path.c_str()) : c->Post(path.c_str(), body, "application/json");
            std::optional<double> retry_after;
            if (!r) {
                last_error = transport_error_text(r.error(), options);
            } else if (r->status >= 200 && r->status < 300) {
                release(std::move(c));
                return r->body;
            } else if (r->status == 429 || r->status >= 500) {
                last_error = fmt::format("HTTP {}: {}", r->status, reply_error_message(r->body));
                retry_after = retry_after_seconds(*r);
            } else {
                release(std::move(c));
                reject(endpoint, *r);
            }
            if (attempt >= attempts)
                fail_hint(ErrorKind::unavailable,
                          "start it with ct3-server --knowledge_base_path DIR, check --server, or use --ttt_fallback "
                          "to answer without TTT",
                          "ct3-server at {} did not answer {} after {} attempt{} (last error: {})", base_url, endpoint,
                          attempt, attempt == 1 ? "" : "s", last_error);
            double wait = jittered_backoff(options, attempt);
            if (retry_after) wait = std::max(wait, std::min(*retry_after, options.backoff_max_s));
            logger("client")->warn("{} {} failed ({}); retrying in {:.2f} s (attempt {}/{})", base_url, endpoint,
                                   last_error, wait, attempt + 1, attempts);
            std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        }
    }

    [[noreturn]] void reject(const std::string & endpoint, const httplib::Response & r) const {
        const std::string message = reply_error_message(r.body);
        std::string hint;
        if (r.status == 401)
            hint = options.api_key.empty() ? "the server requires an API key: give the client the key in the server's "
                                             "--api-key-file"
                                           : "the client's API key is not the one in the server's --api-key-file";
        else if (r.status == 404)
            hint = "is --server the address of a ct3-server (with its path prefix, if behind a proxy)?";
        else if (r.status < 400)
            fail(ErrorKind::bad_format, "ct3-server at {} answered {} with HTTP {} (expected 200): {}", base_url,
                 endpoint, r.status, message);
        throw Error(ErrorKind::invalid_argument,
                    fmt::format("ct3-server at {} rejected {} (HTTP {}): {}", base_url, endpoint, r.status, message),
                    hint);
    }

    json call_json(const char * method, const std::string & route, const std::string & body) {
        const std::string endpoint = fmt::format("{} {}", method, route);
        const std::string reply = call(method, route, body, true);
        json j = parse_strict_json(reply, fmt::format("the reply of ct3-server at {} to {}", base_url, endpoint));
        if (!j.is_object()) bad_reply(endpoint, "(body)", fmt::format("must be a JSON object (got {})", type_name(j)));
        return j;
    }

    // Records the KB's dimension from a reply, or checks it against the one seen before.
    void agree_dim(int64_t d, const std::string & endpoint, const std::string & field) {
        int64_t expected = 0;
        if (dim.compare_exchange_strong(expected, d) || expected == d) return;
        bad_reply(endpoint, field,
                  fmt::format("has dimension {}, but this server's knowledge base has dimension {} (did the server "
                              "restart with another KB?)",
                              d, expected));
    }
};

RetrievalClient::RetrievalClient(RetrievalClientOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    const RetrievalClientOptions & o = impl_->options;
    impl_->url = parse_server_url(o.server_url);
    impl_->base_url = impl_->url.origin + impl_->url.prefix;
    check_seconds(o.connect_timeout_s, "the connect timeout (--server_timeout)", false);
    check_seconds(o.read_timeout_s, "the read timeout (--server_timeout)", false);
    check_seconds(o.backoff_initial_s, "the initial retry backoff", true);
    check_seconds(o.backoff_max_s, "the largest retry backoff", true);
    CT3_CHECK(o.max_attempts >= 1 && o.max_attempts <= 100, ErrorKind::invalid_argument,
              "--server_retries must be between 1 and 100 attempts (got {})", o.max_attempts);
    for (unsigned char c : o.api_key)
        CT3_CHECK(c >= 0x21 && c <= 0x7e, ErrorKind::invalid_argument,
                  "the server API key must be one line of printable ASCII without spaces");
}

RetrievalClient::~RetrievalClient() = default;

const RetrievalClientOptions & RetrievalClient::options() const {
    return impl_->options;
}
const std::string & RetrievalClient::base_url() const {
    return impl_->base_url;
}

std::vector<float> RetrievalClient::embed(const std::string & text) {
    const std::string endpoint = "POST /v1/embeddings";
    const json reply = impl_->call_json("POST", "/v1/embeddings", json{{"input", text}}.dump());
    const json & data = member(reply, "data", endpoint, "");
    if (!data.is_array() || data.size() != 1)
        bad_reply(endpoint, "data",
                  fmt::format("must be an array of 1 embedding (got {} {})", type_name(data),
                              data.is_array() ? data.size() : 0));
    if (get_int(data[0], "index", endpoint, "data[0]", 0) != 0) bad_reply(endpoint, "data[0].index", "must be 0");
    const json & e = member(data[0], "embedding", endpoint, "data[0]");
    if (!e.is_array() || e.empty())
        bad_reply(endpoint, "data[0].embedding",
                  fmt::format("must be a non-empty array of numbers (got {})", type_name(e)));
    std::vector<float> v(e.size());
    double norm2 = 0;
    for (size_t i = 0; i < e.size(); ++i) {
        if (!e[i].is_number())
            bad_reply(endpoint, fmt::format("data[0].embedding[{}]", i),
                      fmt::format("must be a number (got {})", type_name(e[i])));
        v[i] = static_cast<float>(e[i].get<double>());
        if (!std::isfinite(v[i]))
            bad_reply(endpoint, fmt::format("data[0].embedding[{}]", i), "must be a finite float32");
        norm2 += double(v[i]) * double(v[i]);
    }
    impl_->agree_dim(int64_t(v.size()), endpoint, "data[0].embedding");
    if (norm2 == 0)
        fail(ErrorKind::invalid_argument,
             "the KB's embedder at {} finds no features in the text '{}' (all-zero embedding)", impl_->base_url,
             text.substr(0, 64));
    // The KB holds unit vectors; keep the server's exact bits when it sent one (so that searching
    // with this vector equals searching with the text), normalise otherwise.
    const double norm = std::sqrt(norm2);
    if (std::abs(norm - 1) > 1e-4)
        for (float & x : v) x = static_cast<float>(x / norm);
    return v;
}

std::vector<Neighbour> RetrievalClient::search(const SearchRequest & request) {
    const std::string endpoint = "POST /v1/search";
    const bool has_query = !request.query.empty(), has_embedding = !request.embedding.empty();
    CT3_CHECK(has_query != has_embedding, ErrorKind::invalid_argument,
              "a search needs exactly one of a query text and a query embedding (got {})",
              has_query ? "both" : "neither");
    CT3_CHECK(request.mode == "sift" || request.mode == "faiss", ErrorKind::invalid_argument,
              "--retrieval must be sift or faiss (got '{}')", request.mode);
    json body = {{"k", request.k}, {"mode", request.mode}};
    if (has_query) {
        body["query"] = request.query;
    } else {
        for (size_t i = 0; i < request.embedding.size(); ++i)
            CT3_CHECK(std::isfinite(request.embedding[i]), ErrorKind::invalid_argument,
                      "the query embedding has a non-finite value at [{}]", i);
        body["embedding"] = request.embedding;
    }
    if (request.candidates) body["candidates"] = *request.candidates;
    if (request.lambda) body["lambda"] = *request.lambda;
    if (request.nprobe) body["nprobe"] = *request.nprobe;
    if (request.ef_search) body["ef_search"] = *request.ef_search;

    const json reply = impl_->call_json("POST", "/v1/search", body.dump());
    if (reply.contains("mode") && reply["mode"] != request.mode)
        bad_reply(endpoint, "mode",
                  fmt::format("is {} (the request asked for \"{}\")", reply["mode"].dump(), request.mode));
    const json & results = member(reply, "results", endpoint, "");
    if (!results.is_array())
        bad_reply(endpoint, "results", fmt::format("must be an array (got {})", type_name(results)));
    if (int64_t(results.size()) > request.k)
        bad_reply(endpoint, "results", fmt::format("has {} entries, more than k = {}", results.size(), request.k));
    std::vector<Neighbour> out;
    out.reserve(results.size());
    for (size_t i = 0; i < results.size(); ++i) {
        const std::string path = fmt::format("results[{}]", i);
        Neighbour n;
        n.rank = get_int(results[i], "rank", endpoint, path, 0);
        if (n.rank != int64_t(i)) bad_reply(endpoint, path + ".rank", fmt::format("is {} (expected {})", n.rank, i));
        n.id = get_int(results[i], "id", endpoint, path, 0);
        n.text = get_string(results[i], "text", endpoint, path);
        n.dataset = get_string(results[i], "dataset", endpoint, path);
        n.row = get_int(results[i], "row", endpoint, path, 0);
        n.score = get_number(results[i], "score", endpoint, path);
        n.similarity = get_number(results[i], "similarity", endpoint, path);
        // Unit vectors: a cosine outside [-1, 1] beyond rounding means the reply is not what it claims.
        if (std::abs(n.similarity) > 1 + 1e-3)
            bad_reply(endpoint, path + ".similarity",
                      fmt::format("is {} (a cosine, expected within [-1, 1])", n.similarity));
        if (request.mode == "faiss" && (n.score < -1e-6 || n.score > 1 + 1e-3))
            bad_reply(endpoint, path + ".score", fmt::format("is {} (|cos|, expected within [0, 1])", n.score));
        // Both scores decrease along the list (posterior variance; |cos|); the slack absorbs rounding.
        if (i > 0 && n.score > out.back().score + 1e-6)
            bad_reply(endpoint, path + ".score",
                      fmt::format("is {}, above the previous result's {} (scores must not increase)", n.score,
                                  out.back().score));
        out.push_back(std::move(n));
    }
    return out;
}

KbInfo RetrievalClient::kb_info() {
    const std::string endpoint = "GET /v1/kb";
    KbInfo info;
    info.raw = impl_->call_json("GET", "/v1/kb", "");
    info.count = get_int(info.raw, "count", endpoint, "", 0);
    info.dim = get_int(info.raw, "dim", endpoint, "", 1);
    // The embedder identity is an object ({"name" or "type", fitted state, ...}); a bare name is accepted too.
    const json & e = member(info.raw, "embedder", endpoint, "");
    if (e.is_string()) {
        info.embedder = e.get<std::string>();
    } else if (e.is_object()) {
        for (const char * key : {"name", "type"})
            if (e.contains(key) && e[key].is_string()) {
                info.embedder = e[key].get<std::string>();
                break;
            }
        if (info.embedder.empty()) bad_reply(endpoint, "embedder", "has neither a string 'name' nor 'type'");
    } else {
        bad_reply(endpoint, "embedder", fmt::format("must be an object or a string (got {})", type_name(e)));
    }
    impl_->agree_dim(info.dim, endpoint, "dim");
    return info;
}

bool RetrievalClient::healthy() {
    try {
        auto c = impl_->acquire();
        httplib::Result r = c->Get((impl_->url.prefix + "/health").c_str());
        if (!r) return false;
        impl_->release(std::move(c));
        return r->status == 200;
    } catch (const std::exception &) {
        return false;
    }
}

}  // namespace ct3::client
