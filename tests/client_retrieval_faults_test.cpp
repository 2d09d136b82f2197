// RetrievalClient against scripted cpp-httplib servers on loopback: retry-then-success on 503/429,
// exhausted attempts with Retry-After, read timeouts, and malformed replies rejected as bad_format
// naming the field (never retried).
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "client/retrieval_client.h"
#include "models/error.h"
#include "tests/client_http_fixture.h"

namespace {

using ct3::ErrorKind;
using ct3::client::RetrievalClient;
using ct3::client::SearchRequest;
using ct3::test::error_of;
using ct3::test::fast_options;
using ct3::test::neighbour_reply;
using ct3::test::ScriptedServer;
using nlohmann::json;

TEST(ClientRetrieval, RetriesServiceUnavailableThenSucceeds) {
    ScriptedServer server(
        [](const httplib::Request &, httplib::Response & res, int n) {
            if (n <= 2) {
                res.status = n == 1 ? 503 : 429;
                res.set_content(
                    R"({"error": {"code": 503, "message": "the knowledge base is still loading", "type": "unavailable_error"}})",
                    "application/json");
                return;
            }
            res.set_content(neighbour_reply(3).dump(), "application/json");
        },
        "/ct3");
    RetrievalClient client(fast_options(server.url("/ct3"), 3));
    SearchRequest q;
    q.query = "anything";
    q.k = 3;
    const auto got = client.search(q);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[2].id, 12);
    EXPECT_EQ(got[1].text, "t1");
    EXPECT_EQ(server.hits, 3);
    EXPECT_EQ(server.prefixed_hits, 3) << "the path prefix of --server is kept";
}

TEST(ClientRetrieval, PersistentServerErrorsExhaustTheAttemptsAndHonourRetryAfter) {
    ScriptedServer server([](const httplib::Request &, httplib::Response & res, int) {
        res.status = 503;
        res.set_header("Retry-After", "1");
        res.set_content(R"({"error": {"code": 503, "message": "still loading", "type": "unavailable_error"}})",
                        "application/json");
    });
    auto options = fast_options(server.url(), 2);
    options.backoff_max_s = 0.3;  // caps Retry-After: 1
    RetrievalClient client(options);
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { client.kb_info(); }, ErrorKind::unavailable);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_HAS(message, "GET /v1/kb after 2 attempts");
    EXPECT_HAS(message, "HTTP 503: still loading");
    EXPECT_EQ(server.hits, 2);
    EXPECT_GE(seconds, 0.29) << "Retry-After (capped at backoff_max_s) was not honoured";
    EXPECT_FALSE(client.healthy());
    EXPECT_EQ(server.hits, 3) << "healthy() makes one attempt";
}

TEST(ClientRetrieval, SlowServerTimesOut) {
    ScriptedServer server([](const httplib::Request &, httplib::Response & res, int) {
        // Longer than the client's read timeout; stop() waits for the handlers.
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        res.set_content(neighbour_reply(1).dump(), "application/json");
    });
    auto options = fast_options(server.url(), 2);
    options.read_timeout_s = 0.2;
    RetrievalClient client(options);
    SearchRequest q;
    q.query = "slow";
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { client.search(q); }, ErrorKind::unavailable);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_HAS(message, "after 2 attempts");
    EXPECT_HAS(message, "Read");
    EXPECT_HAS(message, "0.2 s");
    EXPECT_GE(seconds, 0.4);
    EXPECT_LT(seconds, 2.5);
}

struct BadReply {
    const char * route;  // "search", "embed", "kb"
    std::string body;
    const char * expected;  // in the message
};

TEST(ClientRetrieval, InvalidRepliesAreRejectedNamingTheField) {
    const json good = neighbour_reply(3);
    auto with = [&](const std::function<void(json &)> & edit) {
        json j = good;
        edit(j);
        return j.dump();
    };
    const std::vector<BadReply> cases = {
        {"search", "<html>proxy error</html>", "POST /v1/search"},
        {"search", R"({"results": [{"rank": 0, "id": 1,)", "POST /v1/search"},
        {"search", "[1, 2]", "must be a JSON object"},
        {"search", R"({"object": "search.result"})", "field 'results' is missing"},
        {"search", R"({"results": {"rank": 0}})", "field 'results' must be an array"},
        {"search", with([](json & j) { j["results"][1].erase("id"); }), "field 'results[1].id' is missing"},
        {"search", with([](json & j) { j["results"][0]["id"] = "12"; }),
         "'results[0].id' must be an integer (got a string)"},
        {"search", with([](json & j) { j["results"][2]["rank"] = 1; }), "'results[2].rank' is 1 (expected 2)"},
        {"search", with([](json & j) { j["results"][0]["text"] = 5; }), "'results[0].text' must be a string"},
        {"search", with([](json & j) { j["results"][0]["row"] = -1; }), "'results[0].row' must be >= 0"},
        {"search", with([](json & j) { j["results"][1]["similarity"] = 3.5; }), "'results[1].similarity' is 3.5"},
        {"search", with([](json & j) { j["results"][2]["score"] = 0.9; }), "'results[2].score' is 0.9, above"},
        {"search", with([](json & j) { j["mode"] = "faiss"; }), "field 'mode'"},
        {"search",
         R"({"results": [{"rank": 0, "id": 1, "text": "a", "dataset": "d", "row": 0, "score": 1e999, "similarity": 0.5}]})",
         "number overflow parsing '1e999'"},
        {"search", neighbour_reply(5).dump(), "has 5 entries, more than k = 4"},
        {"embed", R"({"data": []})", "field 'data' must be an array of 1 embedding"},
        {"embed", R"({"data": [{"index": 0, "embedding": [0.6, "0.8"]}]})", "'data[0].embedding[1]' must be a number"},
        {"embed", R"({"data": [{"index": 0, "embedding": [1e39, 0.5]}]})",
         "'data[0].embedding[0]' must be a finite float32"},
        {"embed", R"({"data": [{"index": 0, "embedding": []}]})", "'data[0].embedding' must be a non-empty array"},
        {"embed", R"({"data": [{"embedding": [0.6, 0.8]}]})", "'data[0].index' is missing"},
        {"kb", R"({"count": 10, "dim": "64", "embedder": {"name": "hashed"}})", "field 'dim' must be an integer"},
        {"kb", R"({"count": 10, "dim": 64, "embedder": {"state": 1}})", "field 'embedder' has neither"},
        {"kb", R"({"count": -1, "dim": 64, "embedder": "hashed"})", "field 'count' must be >= 0"},
    };
    for (const BadReply & c : cases) {
        ScriptedServer server([&c](const httplib::Request &, httplib::Response & res, int) {
            res.set_content(c.body, "application/json");
        });
        RetrievalClient client(fast_options(server.url()));
        const std::string route = c.route;
        const std::string message = error_of(
            [&] {
                if (route == "search") {
                    SearchRequest q;
                    q.query = "x";
                    q.k = 4;
                    client.search(q);
                } else if (route == "embed") {
                    client.embed("x");
                } else {
                    client.kb_info();
                }
            },
            ErrorKind::bad_format);
        EXPECT_HAS(message, c.expected) << " (reply " << c.body << ")";
        EXPECT_EQ(server.hits, 1) << "an invalid reply is not retried: " << c.body;
    }
}

TEST(ClientRetrieval, EmbeddingsMustKeepOneDimensionAndHaveADirection) {
    ScriptedServer server([](const httplib::Request & req, httplib::Response & res, int n) {
        if (req.path == "/v1/kb") {
            res.set_content(R"({"count": 3, "dim": 2, "embedder": {"name": "hashed"}})", "application/json");
        } else if (n == 2) {
            res.set_content(R"({"data": [{"index": 0, "embedding": [0.6, 0.8]}]})", "application/json");
        } else if (n == 3) {
            res.set_content(R"({"data": [{"index": 0, "embedding": [3.0, 4.0]}]})", "application/json");
        } else if (n == 4) {
            res.set_content(R"({"data": [{"index": 0, "embedding": [0.0, 0.0]}]})", "application/json");
        } else {
            res.set_content(R"({"data": [{"index": 0, "embedding": [0.6, 0.0, 0.8]}]})", "application/json");
        }
    });
    RetrievalClient client(fast_options(server.url()));
    EXPECT_EQ(client.kb_info().dim, 2);
    EXPECT_EQ(client.embed("a"), (std::vector<float>{0.6f, 0.8f}));
    EXPECT_EQ(client.embed("b"), (std::vector<float>{0.6f, 0.8f})) << "a non-unit vector is normalised";
    EXPECT_HAS(error_of([&] { client.embed("c"); }, ErrorKind::invalid_argument), "all-zero");
    const std::string message = error_of([&] { client.embed("d"); }, ErrorKind::bad_format);
    EXPECT_HAS(message, "'data[0].embedding' has dimension 3");
    EXPECT_HAS(message, "dimension 2");
}

}  // namespace
