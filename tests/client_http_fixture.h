// Helpers of the RetrievalClient tests: a scripted cpp-httplib server on loopback, fast retry
// options, a free port nothing listens on, and an assertion for ct3::Error kinds and messages.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "client/retrieval_client.h"
#include "models/error.h"

namespace ct3::test {

// A cpp-httplib server whose every request runs `script(request, response, n)`, n = 1, 2, ...
struct ScriptedServer {
    using Script = std::function<void(const httplib::Request &, httplib::Response &, int)>;
    httplib::Server server;
    std::atomic<int> hits{0};
    std::atomic<int> prefixed_hits{0};
    const Script script;
    int port = 0;
    std::thread thread;

    explicit ScriptedServer(Script s, std::string prefix = "") : script(std::move(s)) {
        server.set_keep_alive_timeout(1);
        auto handler = [this, prefix](const httplib::Request & req, httplib::Response & res) {
            const int n = ++hits;
            if (req.path.rfind(prefix + "/", 0) == 0) ++prefixed_hits;
            script(req, res, n);
        };
        server.Get(".*", handler);
        server.Post(".*", handler);
        port = server.bind_to_any_port("127.0.0.1");
        thread = std::thread([this] { server.listen_after_bind(); });
    }
    ~ScriptedServer() {
        server.stop();
        thread.join();
    }
    std::string url(const std::string & prefix = "") const {
        return "http://127.0.0.1:" + std::to_string(port) + prefix;
    }
};

inline ct3::client::RetrievalClientOptions fast_options(const std::string & url, int attempts = 3) {
    ct3::client::RetrievalClientOptions o;
    o.server_url = url;
    o.max_attempts = attempts;
    o.backoff_initial_s = 0.02;
    o.backoff_max_s = 0.05;
    o.connect_timeout_s = 2;
    o.read_timeout_s = 5;
    return o;
}

// Calls f, expects a ct3::Error of `kind`, returns its full text (message and hint).
template <typename F>
std::string error_of(F && f, ct3::ErrorKind kind) {
    try {
        f();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), kind) << ct3::error_kind_name(e.kind()) << ": " << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no ct3::Error thrown";
    return "";
}

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// A port nothing listens on: bound once, then closed.
inline int dead_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len), 0);
    ::close(fd);
    return ntohs(addr.sin_port);
}

inline nlohmann::json neighbour_reply(int n) {
    nlohmann::json results = nlohmann::json::array();
    for (int i = 0; i < n; ++i)
        results.push_back({{"rank", i},
                           {"id", 10 + i},
                           {"text", "t" + std::to_string(i)},
                           {"dataset", "gsm8k"},
                           {"row", i},
                           {"score", 0.5 - 0.1 * i},
                           {"similarity", 0.9 - 0.1 * i}});
    return {{"object", "search.result"}, {"mode", "sift"}, {"results", results}};
}

}  // namespace ct3::test
