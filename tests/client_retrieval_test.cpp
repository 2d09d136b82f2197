// RetrievalClient over real HTTP on loopback against a real ct3 server: answers equal the server's
// own API (both modes, text and embedding queries), API keys, 4xx propagation, concurrent callers,
// an unreachable server, URL and option validation. Faults: client_retrieval_faults_test.cpp.
#include <chrono>
#include <cmath>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/retrieval_client.h"
#include "kb/retriever.h"
#include "models/error.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/text_embedder.h"
#include "tests/client_http_fixture.h"
#include "tests/server_kb_fixture.h"

namespace {

using ct3::ErrorKind;
using ct3::client::Neighbour;
using ct3::client::RetrievalClient;
using ct3::client::SearchRequest;
using ct3::test::error_of;
using ct3::test::fast_options;
using nlohmann::json;

ct3::test::ServerKb & shared_kb() {
    static ct3::test::ServerKb kb;
    return kb;
}

// A real ct3 server on 127.0.0.1:<free port>, serving from a background thread.
struct LiveServer {
    ct3::server::Metrics metrics;
    ct3::kb::Retriever retriever;
    ct3::server::Api api;
    ct3::server::HttpServer http;
    int port = 0;
    std::thread thread;

    static ct3::server::HttpOptions http_options() {
        ct3::server::HttpOptions o;
        o.port = 0;
        o.threads = 8;
        o.keep_alive_timeout_s = 1;
        return o;
    }
    explicit LiveServer(std::shared_ptr<const ct3::server::ApiKey> key = nullptr)
        : retriever(*shared_kb().kb), api({}, metrics, std::move(key)), http(api, metrics, http_options()) {
        api.set_ready(*shared_kb().kb, retriever, ct3::server::make_kb_embed_fn(*shared_kb().kb));
        port = http.bind();
        thread = std::thread([this] { http.run(); });
    }
    ~LiveServer() {
        http.stop();
        thread.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
    // The server's own answer, without HTTP.
    json direct(const std::string & path, const json & body, const std::string & key = "") {
        ct3::server::Request r;
        r.method = "POST";
        r.path = path;
        r.body = body.dump();
        if (!key.empty()) r.headers["authorization"] = "Bearer " + key;
        const ct3::server::Response response = api.handle(r);
        EXPECT_EQ(response.status, 200) << response.body;
        return json::parse(response.body);
    }
};

void expect_same(const std::vector<Neighbour> & got, const json & want, const std::string & what) {
    ASSERT_EQ(got.size(), want["results"].size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
        const json & w = want["results"][i];
        EXPECT_EQ(got[i].rank, int64_t(i)) << what;
        EXPECT_EQ(got[i].id, w["id"].get<int64_t>()) << what << " result " << i;
        EXPECT_EQ(got[i].score, w["score"].get<double>()) << what << " result " << i;
        EXPECT_EQ(got[i].similarity, w["similarity"].get<double>()) << what << " result " << i;
        EXPECT_EQ(got[i].text, w["text"].get<std::string>()) << what;
        EXPECT_EQ(got[i].dataset, w["dataset"].get<std::string>()) << what;
        EXPECT_EQ(got[i].row, w["row"].get<int64_t>()) << what;
    }
}

TEST(ClientRetrieval, SearchEqualsTheServersOwnAnswerInBothModes) {
    LiveServer s;
    RetrievalClient client(fast_options(s.url()));
    const auto & kb = shared_kb();
    for (const std::string mode : {"sift", "faiss"}) {
        for (int64_t id : {0, 7, 101, 120}) {
            SearchRequest q;
            q.query = kb.texts[size_t(id)];
            q.k = 6;
            q.mode = mode;
            const auto got = client.search(q);
            expect_same(got, s.direct("/v1/search", {{"query", q.query}, {"k", 6}, {"mode", mode}}),
                        mode + " query " + std::to_string(id));
            // The client's embedding of the text searches exactly like the text itself.
            SearchRequest e;
            e.embedding = client.embed(q.query);
            e.k = 6;
            e.mode = mode;
            e.candidates = 50;
            e.lambda = 0.05;
            expect_same(
                client.search(e),
                s.direct("/v1/search",
                         {{"embedding", e.embedding}, {"k", 6}, {"mode", mode}, {"candidates", 50}, {"lambda", 0.05}}),
                mode + " embedding " + std::to_string(id));
        }
    }
    SearchRequest q;
    q.query = kb.texts[7];
    q.k = 3;
    q.mode = "faiss";
    EXPECT_EQ(client.search(q).at(0).id, 7);
}

TEST(ClientRetrieval, EmbedReturnsTheKbEmbeddersUnitVector) {
    LiveServer s;
    RetrievalClient client(fast_options(s.url()));
    for (const std::string & text :
         std::vector<std::string>{"Alice has 3 apples", "def add(a, b): return a + b", shared_kb().texts[5]}) {
        const std::vector<float> v = client.embed(text);
        EXPECT_EQ(v, shared_kb().embed({text})) << text;
        const json direct = s.direct("/v1/embeddings", {{"input", text}});
        EXPECT_EQ(v, direct["data"][0]["embedding"].get<std::vector<float>>());
        double norm2 = 0;
        for (float x : v) norm2 += double(x) * x;
        EXPECT_NEAR(norm2, 1.0, 1e-5);
    }
}

TEST(ClientRetrieval, KbInfoAndHealth) {
    LiveServer s;
    RetrievalClient client(fast_options(s.url() + "/"));
    EXPECT_EQ(client.base_url(), s.url());
    EXPECT_TRUE(client.healthy());
    const auto info = client.kb_info();
    EXPECT_EQ(info.count, shared_kb().size());
    EXPECT_EQ(info.dim, shared_kb().dim);
    EXPECT_EQ(info.embedder, "hashed");
    EXPECT_EQ(info.raw["embedder"], shared_kb().embedder->identity());
    EXPECT_EQ(info.raw["index"]["factory"], "Flat");

    RetrievalClient dead(fast_options("http://127.0.0.1:" + std::to_string(ct3::test::dead_port())));
    EXPECT_FALSE(dead.healthy());
}

TEST(ClientRetrieval, ApiKeyRightWorksMissingOrWrongFailsWithoutRetry) {
    LiveServer s(std::make_shared<ct3::server::ApiKey>("s3cret-key-123"));
    auto options = fast_options(s.url());
    options.api_key = "s3cret-key-123";
    RetrievalClient good(options);
    SearchRequest q;
    q.query = shared_kb().texts[9];
    q.k = 4;
    expect_same(good.search(q), s.direct("/v1/search", {{"query", q.query}, {"k", 4}}, "s3cret-key-123"), "with key");
    EXPECT_EQ(good.kb_info().count, shared_kb().size());

    RetrievalClient missing(fast_options(s.url()));
    std::string message = error_of([&] { missing.search(q); }, ErrorKind::invalid_argument);
    EXPECT_HAS(message, "HTTP 401");
    EXPECT_HAS(message, "missing API key");
    EXPECT_HAS(message, "--api-key-file");
    EXPECT_EQ(s.metrics.requests("/v1/search", 401), 1u) << "a 401 is not retried";

    options.api_key = "wrong-key";
    RetrievalClient wrong(options);
    message = error_of([&] { wrong.embed("x"); }, ErrorKind::invalid_argument);
    EXPECT_HAS(message, "invalid API key");
    EXPECT_EQ(s.metrics.requests("/v1/embeddings", 401), 1u);
    EXPECT_TRUE(missing.healthy()) << "/health needs no key";
}

TEST(ClientRetrieval, ServerRejectionIsPropagatedWithoutRetry) {
    LiveServer s;
    RetrievalClient client(fast_options(s.url()));
    SearchRequest q;
    q.query = "Alice has apples";
    q.k = 0;
    std::string message = error_of([&] { client.search(q); }, ErrorKind::invalid_argument);
    EXPECT_HAS(message, "rejected POST /v1/search (HTTP 400)");
    EXPECT_HAS(message, "field 'k'");
    EXPECT_HAS(message, "between 1 and 1000");
    EXPECT_EQ(s.metrics.requests("/v1/search", 400), 1u);

    SearchRequest e;
    e.embedding = std::vector<float>(7, 0.5f);  // the KB has dimension 64
    message = error_of([&] { client.search(e); }, ErrorKind::invalid_argument);
    EXPECT_HAS(message, "64");
    // Checked locally, before any request.
    SearchRequest both = q;
    both.embedding = {1.0f};
    EXPECT_HAS(error_of([&] { client.search(both); }, ErrorKind::invalid_argument), "exactly one");
    SearchRequest mode = e;
    mode.mode = "bm25";
    EXPECT_HAS(error_of([&] { client.search(mode); }, ErrorKind::invalid_argument), "sift or faiss");
    EXPECT_EQ(s.metrics.requests("/v1/search", 400), 2u);
}

TEST(ClientRetrieval, ConcurrentCallsShareOneClient) {
    LiveServer s;
    RetrievalClient client(fast_options(s.url()));
    const auto & kb = shared_kb();
    std::vector<std::vector<Neighbour>> want;
    for (int i = 0; i < 12; ++i) {
        SearchRequest q;
        q.query = kb.texts[size_t(i * 9)];
        q.k = 5;
        q.mode = i % 2 ? "faiss" : "sift";
        want.push_back(client.search(q));
    }
    std::vector<std::string> failures(6);
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < 4; ++round)
                for (int i = t % 2; i < 12; i += 2) {
                    SearchRequest q;
                    q.query = kb.texts[size_t(i * 9)];
                    q.k = 5;
                    q.mode = i % 2 ? "faiss" : "sift";
                    try {
                        const auto got = client.search(q);
                        bool same = got.size() == want[size_t(i)].size();
                        for (size_t j = 0; same && j < got.size(); ++j)
                            same = got[j].id == want[size_t(i)][j].id &&
                                   std::abs(got[j].score - want[size_t(i)][j].score) < 1e-6;
                        if (!same) failures[size_t(t)] = "query " + std::to_string(i) + " differs";
                    } catch (const std::exception & e) {
                        failures[size_t(t)] = e.what();
                    }
                }
        });
    for (auto & th : threads) th.join();
    for (const auto & f : failures) EXPECT_EQ(f, "");
}

TEST(ClientRetrieval, UnreachableServerIsUnavailableAfterAllAttempts) {
    const std::string url = "http://127.0.0.1:" + std::to_string(ct3::test::dead_port());
    RetrievalClient client(fast_options(url, 3));
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { client.embed("hello"); }, ErrorKind::unavailable);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_HAS(message, url);
    EXPECT_HAS(message, "after 3 attempts");
    EXPECT_HAS(message, "Connection");
    EXPECT_HAS(message, "--ttt_fallback");
    EXPECT_HAS(message, "ct3-server --knowledge_base_path");
    // Two backoffs of at least half of 0.02 and 0.04 s (equal jitter).
    EXPECT_GE(seconds, 0.03);
    EXPECT_LT(seconds, 5.0);
}

TEST(ClientRetrieval, BadUrlsAndOptionsAreRejected) {
    for (const std::string url : {"127.0.0.1:8000", "ftp://host:21", "http://", "http://:8000", "http://host:0",
                                  "http://host:99999", "http://host:80a", "http://host:", "http://user@host:1",
                                  "http://host:1/x?y=1", "http://[::1", "http://ho st:1", "http://[zz]:1"}) {
        const std::string message =
            error_of([&] { RetrievalClient c(fast_options(url)); }, ErrorKind::invalid_argument);
        EXPECT_HAS(message, "--server '" + url + "'");
    }
    EXPECT_EQ(RetrievalClient(fast_options("http://localhost:8000/ct3/")).base_url(), "http://localhost:8000/ct3");
    EXPECT_EQ(RetrievalClient(fast_options("http://[::1]:9000")).base_url(), "http://[::1]:9000");
    EXPECT_EQ(RetrievalClient(fast_options("http://example.org")).base_url(), "http://example.org:80");
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT  // Debian's cpp-httplib has TLS: https is passed through to it
    EXPECT_EQ(RetrievalClient(fast_options("https://localhost")).base_url(), "https://localhost:443");
#endif

    auto o = fast_options("http://127.0.0.1:8000");
    o.max_attempts = 0;
    EXPECT_HAS(error_of([&] { RetrievalClient c(o); }, ErrorKind::invalid_argument), "--server_retries");
    o = fast_options("http://127.0.0.1:8000");
    o.read_timeout_s = -1;
    EXPECT_HAS(error_of([&] { RetrievalClient c(o); }, ErrorKind::invalid_argument), "--server_timeout");
    o = fast_options("http://127.0.0.1:8000");
    o.api_key = "two words";
    EXPECT_HAS(error_of([&] { RetrievalClient c(o); }, ErrorKind::invalid_argument), "API key");
}

}  // namespace
