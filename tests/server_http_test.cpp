// The server over real HTTP on loopback (cpp-httplib client): endpoints, the body limit, many
// concurrent clients against direct Retriever answers (and FAISS-call batching), graceful stop.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "kb/retriever.h"
#include "server/api.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/text_embedder.h"
#include "tests/server_kb_fixture.h"

namespace {

using nlohmann::json;

ct3::test::ServerKb & shared_kb() {
    static ct3::test::ServerKb kb;
    return kb;
}

// A server on 127.0.0.1:<free port>, serving from a background thread.
struct LiveServer {
    ct3::server::Metrics metrics;
    ct3::kb::Retriever retriever;
    ct3::server::Api api;
    ct3::server::HttpServer http;
    int port = 0;
    std::thread thread;

    static ct3::server::HttpOptions http_options(int threads, int64_t max_body,
                                                 std::function<void(const ct3::server::Request &)> hook) {
        ct3::server::HttpOptions o;
        o.host = "127.0.0.1";
        o.port = 0;
        o.threads = threads;
        o.max_body_bytes = max_body;
        o.before_handle = std::move(hook);
        return o;
    }

    explicit LiveServer(int threads = 4, int64_t max_body = 1 << 20, ct3::kb::RetrieverOptions ropts = {},
                        std::function<void(const ct3::server::Request &)> hook = {})
        : retriever(*shared_kb().kb, ropts),
          api(api_options(max_body), metrics),
          http(api, metrics, http_options(threads, max_body, std::move(hook))) {
        api.set_ready(*shared_kb().kb, retriever, ct3::server::make_kb_embed_fn(*shared_kb().kb));
        port = http.bind();
        thread = std::thread([this] { http.run(); });
    }
    static ct3::server::ApiOptions api_options(int64_t max_body) {
        ct3::server::ApiOptions o;
        o.max_body_bytes = max_body;
        return o;
    }
    ~LiveServer() { shutdown(); }
    void shutdown() {
        http.stop();
        if (thread.joinable()) thread.join();
    }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(30, 0);
        return c;
    }
};

TEST(ServerHttp, EndpointsAnswerOverHttp) {
    LiveServer s;
    auto c = s.client();
    auto r = c.Get("/health");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body)["kb"]["count"], shared_kb().size());

    const auto & kb = shared_kb();
    r = c.Post("/v1/search", json{{"query", kb.texts[7]}, {"k", 4}}.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    EXPECT_EQ(json::parse(r->body)["results"][0]["id"], 7);

    r = c.Post("/v1/embeddings", json{{"input", {"one", "two"}}}.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const json e = json::parse(r->body);
    ASSERT_EQ(e["data"].size(), 2u);

    // The original client's request, with an embedding from /v1/embeddings.
    json original = {{"id", "a1b2"}, {"query_embedding", {e["data"][0]["embedding"]}}, {"num_retrieved_samples", 8}};
    r = c.Post("/search/", original.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_GE(json::parse(r->body)["retrieved_samples"].size(), 1u);

    r = c.Get("/metrics");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
    EXPECT_NE(r->body.find("ct3_http_requests_total{endpoint=\"/v1/search\",status=\"200\"} 1"), std::string::npos);

    r = c.Get("/does/not/exist");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(json::parse(r->body)["error"]["type"], "not_found_error");
    r = c.Get("/v1/search");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(r->get_header_value("Allow"), "POST");
    r = c.Post("/v1/search", "{broken", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(json::parse(r->body)["error"]["code"], 400);
}

TEST(ServerHttp, OversizedBodyGets413Envelope) {
    LiveServer s(2, /*max_body=*/8 << 20);
    // 9 MiB against the default 8 MiB limit, sent in full by a normal client. (cpp-httplib reads
    // and discards a too-large body before answering, so the client never meets a reset socket.)
    auto c = s.client();
    auto r = c.Post("/v1/search", std::string(9 << 20, ' '), "application/json");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 413);
    const json body = json::parse(r->body);
    EXPECT_EQ(body["error"]["code"], 413);
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_NE(body["error"]["message"].get<std::string>().find("limit of 8388608 bytes"), std::string::npos)
        << r->body;
    // The server still serves afterwards.
    r = s.client().Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(s.metrics.requests("/v1/search", 413), 1u);
}

TEST(ServerHttp, ConcurrentClientsGetCorrectResultsAndShareFaissCalls) {
    const int threads = 16, per_thread = 20;
    // A batching window makes sharing FAISS calls certain under concurrency, not a matter of luck.
    ct3::kb::RetrieverOptions ropts;
    ropts.batch_window_us = 2000;
    LiveServer s(threads, 1 << 20, ropts);
    const auto & kb = shared_kb();
    // Queries: KB texts' own embeddings, alternating sift and faiss.
    std::vector<json> requests;
    std::vector<std::vector<ct3::kb::Hit>> want;
    for (int i = 0; i < threads * per_thread; ++i) {
        const int64_t id = (i * 37) % kb.size();
        const bool sift = i % 2 == 0;
        requests.push_back({{"embedding", kb.row(id)}, {"k", 6}, {"mode", sift ? "sift" : "faiss"}});
        ct3::kb::SearchParams p;
        p.k = 6;
        p.mode = sift ? ct3::kb::SearchMode::sift : ct3::kb::SearchMode::faiss;
        want.push_back(s.retriever.search(kb.row(id).data(), p));
    }
    const auto before = s.retriever.stats();
    std::vector<std::string> failures(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            auto c = s.client();
            for (int i = t * per_thread; i < (t + 1) * per_thread; ++i) {
                auto r = c.Post("/v1/search", requests[size_t(i)].dump(), "application/json");
                if (!r || r->status != 200) {
                    failures[size_t(t)] = "request " + std::to_string(i) + " failed: " +
                                          (r ? r->body : httplib::to_string(r.error()));
                    return;
                }
                const json results = json::parse(r->body)["results"];
                const auto & w = want[size_t(i)];
                // FAISS may compute a batch with BLAS and a single query without: distances differ
                // in the last bits, and exact ties (the KB's duplicated texts have identical
                // vectors) may resolve to the other copy. Anything else is a wrong answer.
                bool same = results.size() == w.size();
                for (size_t j = 0; same && j < w.size(); ++j) {
                    const double score = results[j]["score"].get<double>();
                    const int64_t id = results[j]["id"].get<int64_t>();
                    same = std::abs(score - w[j].score) < 1e-5;
                    if (same && id != w[j].id)
                        same = std::any_of(w.begin(), w.end(), [&](const ct3::kb::Hit & h) {
                            return kb.texts[size_t(h.id)] == kb.texts[size_t(id)] && std::abs(h.score - score) < 1e-5;
                        });
                }
                if (!same) {
                    std::string expected;
                    for (const auto & h : w) expected += fmt::format(" {}:{:.9g}", h.id, h.score);
                    std::string got;
                    for (const auto & h : results) got += fmt::format(" {}:{:.9g}", h["id"].get<int64_t>(), h["score"].get<double>());
                    failures[size_t(t)] = "request " + std::to_string(i) + " differs from the Retriever: got" + got +
                                          ", expected" + expected;
                    return;
                }
            }
        });
    for (auto & th : pool) th.join();
    for (const auto & f : failures) EXPECT_EQ(f, "");
    const auto after = s.retriever.stats();
    const int64_t queries = after.queries - before.queries, calls = after.faiss_calls - before.faiss_calls;
    EXPECT_EQ(queries, threads * per_thread);
    EXPECT_LT(calls, queries) << "concurrent requests share FAISS calls";
    EXPECT_EQ(s.metrics.requests("/v1/search", 200), uint64_t(threads * per_thread));
}

TEST(ServerHttp, StopDrainsInFlightRequests) {
    // The hook holds the marked request inside its handler until the test has called stop().
    std::promise<void> entered, release;
    std::shared_future<void> released = release.get_future().share();
    std::atomic<bool> entered_once{false};
    LiveServer s(2, 1 << 20, {}, [&](const ct3::server::Request & r) {
        if (r.header("x-test-hold") != "1") return;
        if (!entered_once.exchange(true)) entered.set_value();
        released.wait();
    });
    const auto & kb = shared_kb();
    auto in_flight = std::async(std::launch::async, [&] {
        auto c = s.client();
        return c.Post("/v1/search", httplib::Headers{{"X-Test-Hold", "1"}},
                      json{{"query", kb.texts[11]}, {"k", 64}}.dump(), "application/json");
    });
    ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready);
    EXPECT_EQ(s.http.in_flight(), 1);
    s.http.stop();
    // No new connections once stopped.
    auto refused = s.client().Get("/health");
    EXPECT_FALSE(refused);
    release.set_value();
    auto r = in_flight.get();
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body)["results"].size(), 64u);
    s.shutdown();  // run() returns: the pool has drained
    EXPECT_EQ(s.http.drained(), 1);
    EXPECT_EQ(s.http.in_flight(), 0);
}

TEST(ServerHttp, StopBeforeRunReturnsAtOnce) {
    ct3::server::Metrics metrics;
    ct3::server::Api api({}, metrics);
    ct3::server::HttpOptions o;
    o.port = 0;
    ct3::server::HttpServer http(api, metrics, o);
    ASSERT_GT(http.bind(), 0);
    http.stop();
    http.run();  // must not block
    EXPECT_EQ(http.drained(), 0);
}

}  // namespace
