// Api::handle without sockets, on an in-memory KB with a real hashed embedder: every endpoint,
// the original /search/ wire format against the Retriever, every rejected input, auth, metrics.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kb/retriever.h"
#include "models/error.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/text_embedder.h"
#include "tests/server_kb_fixture.h"
#include "tests/test_support.h"

namespace {

using nlohmann::json;
using ct3::server::Api;
using ct3::server::ApiOptions;
using ct3::server::Request;
using ct3::server::Response;

ct3::test::ServerKb & shared_kb() {
    static ct3::test::ServerKb kb;
    return kb;
}

// One Api over the shared KB; each test gets its own (metrics, options, key).
struct Server {
    ct3::server::Metrics metrics;
    ct3::kb::Retriever retriever;
    Api api;
    explicit Server(ApiOptions options = {}, std::shared_ptr<const ct3::server::ApiKey> key = nullptr, bool ready = true)
        : retriever(*shared_kb().kb), api(options, metrics, std::move(key)) {
        if (ready) api.set_ready(*shared_kb().kb, retriever, ct3::server::make_kb_embed_fn(*shared_kb().kb));
    }
    Response call(const std::string & method, const std::string & path, const std::string & body = {},
                  std::map<std::string, std::string> headers = {}) {
        Request r{method, path, body, std::move(headers)};
        return api.handle(r);
    }
    Response post(const std::string & path, const json & body) { return call("POST", path, body.dump()); }
};

json body_of(const Response & r) { return json::parse(r.body); }

std::string header_of(const Response & r, const std::string & name) {
    for (const auto & [k, v] : r.headers)
        if (k == name) return v;
    return {};
}

json embedding_json(const std::vector<float> & v) { return json(v); }

TEST(ServerApi, V1SearchTextQueryFindsItsOwnEntryFirst) {
    Server s;
    const auto & kb = shared_kb();
    const int64_t id = 21;  // not duplicated
    const Response r = s.post("/v1/search", {{"query", kb.texts[id]}, {"k", 5}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json b = body_of(r);
    EXPECT_EQ(b["object"], "search.result");
    EXPECT_EQ(b["mode"], "sift");
    EXPECT_EQ(b["k"], 5);
    EXPECT_EQ(b["candidates"], kb.size());  // default 1000, clamped to the KB
    ASSERT_EQ(b["results"].size(), 5u);
    const json & first = b["results"][0];
    EXPECT_EQ(first["rank"], 0);
    EXPECT_EQ(first["id"], id);
    EXPECT_EQ(first["text"], kb.texts[id]);
    EXPECT_EQ(first["dataset"], "gsm8k");
    EXPECT_EQ(first["row"], id);
    EXPECT_NEAR(first["similarity"].get<double>(), 1.0, 1e-5);
    EXPECT_NEAR(first["score"].get<double>(), 1 - 1 / 1.01, 1e-5);  // σ² after the exact match
    for (size_t i = 1; i < 5; ++i)
        EXPECT_LE(b["results"][i]["score"].get<double>(), b["results"][i - 1]["score"].get<double>() + 1e-12);
    EXPECT_TRUE(b["timing_ms"].contains("embed"));
    EXPECT_TRUE(b["timing_ms"].contains("search"));
}

TEST(ServerApi, V1SearchEmbeddingEqualsRetrieverInBothModes) {
    Server s;
    const auto & kb = shared_kb();
    const auto query = kb.embed({"Bob buys more marbles, how many marbles?"});
    for (const char * mode : {"sift", "faiss"}) {
        const Response r = s.post("/v1/search", {{"embedding", embedding_json(query)},
                                                 {"k", 12},
                                                 {"mode", mode},
                                                 {"candidates", 50},
                                                 {"lambda", 0.05}});
        ASSERT_EQ(r.status, 200) << r.body;
        ct3::kb::SearchParams p;
        p.k = 12;
        p.mode = ct3::kb::parse_search_mode(mode);
        p.candidates = 50;
        p.lambda = 0.05;
        const auto want = s.retriever.search(query.data(), p);
        const json results = body_of(r)["results"];
        ASSERT_EQ(results.size(), want.size()) << mode;
        for (size_t i = 0; i < want.size(); ++i) {
            EXPECT_EQ(results[i]["id"], want[i].id) << mode << " rank " << i;
            EXPECT_DOUBLE_EQ(results[i]["score"].get<double>(), want[i].score);
            EXPECT_DOUBLE_EQ(results[i]["similarity"].get<double>(), want[i].similarity);
            EXPECT_EQ(results[i]["text"], kb.texts[size_t(want[i].id)]);
        }
    }
}

// The original's dict semantics, written out independently of nlohmann::ordered_json.
std::vector<std::pair<std::string, double>> python_dict(const ct3::test::ServerKb & kb,
                                                        const std::vector<ct3::kb::Hit> & hits) {
    std::vector<std::pair<std::string, double>> out;
    for (const auto & h : hits) {
        const std::string & text = kb.texts[size_t(h.id)];
        auto it = std::find_if(out.begin(), out.end(), [&](const auto & p) { return p.first == text; });
        if (it == out.end()) out.emplace_back(text, std::abs(h.score));
        else it->second = std::abs(h.score);
    }
    return out;
}

void expect_retrieved_samples(const Response & r, const std::vector<std::pair<std::string, double>> & want) {
    ASSERT_EQ(r.status, 200) << r.body;
    // Parse preserving order: the order of keys is part of the wire format.
    const nlohmann::ordered_json got = nlohmann::ordered_json::parse(r.body)["retrieved_samples"];
    ASSERT_EQ(got.size(), want.size());
    size_t i = 0;
    for (const auto & item : got.items()) {
        EXPECT_EQ(item.key(), want[i].first) << "position " << i;
        EXPECT_NEAR(item.value().get<double>(), want[i].second, 1e-12) << "position " << i;
        ++i;
    }
}

TEST(ServerApi, OriginalSearchRoundTripsRetrieverResults) {
    Server s;
    const auto & kb = shared_kb();
    const auto query = kb.embed({"Carla has cookies and buys more cookies"});
    ct3::kb::SearchParams p;
    p.k = 8;
    const auto want = python_dict(kb, s.retriever.search(query.data(), p));
    const json request = {{"id", "9f1c2e"}, {"query_embedding", json::array({embedding_json(query)})},
                          {"num_retrieved_samples", 8}, {"extra", "ignored like pydantic"}};
    expect_retrieved_samples(s.post("/search/", request), want);
    // A flat embedding and the path without the trailing slash work too.
    expect_retrieved_samples(s.post("/search", {{"query_embedding", embedding_json(query)}, {"num_retrieved_samples", 8}}),
                             want);
}

TEST(ServerApi, OriginalSearchCollapsesRepeatedTextsKeepingFirstPositionAndLastScore) {
    const auto & kb = shared_kb();
    // With a large λ SIFT observes the best entries again and again: repeated ids, falling scores.
    ApiOptions options;
    options.default_lambda = 50;
    Server s(options);
    const auto query = kb.row(kb.duplicated[0]);
    ct3::kb::SearchParams p;
    p.k = 10;
    p.lambda = 50;
    const auto hits = s.retriever.search(query.data(), p);
    const auto want = python_dict(kb, hits);
    ASSERT_LT(want.size(), hits.size()) << "the test needs repeated texts";
    // Some text must come back with a score other than its first one (the last one wins).
    bool later_score_differs = false;
    for (const auto & [text, score] : want)
        for (const auto & h : hits)
            if (kb.texts[size_t(h.id)] == text && std::abs(h.score) != score) later_score_differs = true;
    EXPECT_TRUE(later_score_differs);
    expect_retrieved_samples(s.post("/search/", {{"query_embedding", {embedding_json(query)}}, {"num_retrieved_samples", 10}}),
                             want);

    // faiss mode (--only_faiss): two KB entries with the same text collapse into one key.
    ApiOptions faiss_options;
    faiss_options.default_mode = ct3::kb::SearchMode::faiss;
    Server f(faiss_options);
    ct3::kb::SearchParams fp;
    fp.k = 6;
    fp.mode = ct3::kb::SearchMode::faiss;
    const auto fhits = f.retriever.search(query.data(), fp);
    const auto fwant = python_dict(kb, fhits);
    EXPECT_EQ(fwant.size(), fhits.size() - 1);
    expect_retrieved_samples(f.post("/search/", {{"query_embedding", {embedding_json(query)}}, {"num_retrieved_samples", 6}}),
                             fwant);
}

TEST(ServerApi, OriginalSearchErrorsUseFastApiShapes) {
    Server s;
    const auto & kb = shared_kb();
    // Wrong dimension: 400 {"detail": "..."} naming the required dimension and the embedder.
    Response r = s.post("/search/", {{"query_embedding", {{0.1, 0.2, 0.3}}}, {"num_retrieved_samples", 4}});
    EXPECT_EQ(r.status, 400);
    const std::string detail = body_of(r)["detail"].get<std::string>();
    EXPECT_NE(detail.find("dimension 3"), std::string::npos) << detail;
    EXPECT_NE(detail.find("required dimension 64"), std::string::npos) << detail;
    EXPECT_NE(detail.find("hashed"), std::string::npos) << detail;

    auto expect_422 = [&](const std::string & body, const std::string & field) {
        const Response e = s.call("POST", "/search/", body);
        EXPECT_EQ(e.status, 422) << body << " -> " << e.body;
        const json d = body_of(e)["detail"];
        ASSERT_TRUE(d.is_array() && d.size() == 1) << e.body;
        json loc = json::array({"body"});
        if (!field.empty()) loc.push_back(field);
        EXPECT_EQ(d[0]["loc"], loc) << body;
        EXPECT_TRUE(d[0]["msg"].is_string());
    };
    const std::string emb = embedding_json(kb.row(0)).dump();
    expect_422("{\"query_embedding\": [" + emb + "]}", "num_retrieved_samples");
    expect_422("{\"num_retrieved_samples\": 3}", "query_embedding");
    expect_422("{\"query_embedding\": [" + emb + "], \"num_retrieved_samples\": 0}", "num_retrieved_samples");
    expect_422("{\"query_embedding\": [" + emb + "], \"num_retrieved_samples\": 2.5}", "num_retrieved_samples");
    expect_422("{\"query_embedding\": [" + emb + "," + emb + "], \"num_retrieved_samples\": 2}", "query_embedding");
    expect_422("{\"query_embedding\": \"zz\", \"num_retrieved_samples\": 2}", "query_embedding");
    std::vector<float> huge = kb.row(0);
    json big = embedding_json(huge);
    big[5] = 1e39;  // finite as a double, inf as float32
    expect_422(json{{"query_embedding", {big}}, {"num_retrieved_samples", 2}}.dump(), "query_embedding");
    expect_422("{\"query_embedding\": [", "");
    expect_422("[1, 2]", "");
    // An integral float is an int to pydantic.
    EXPECT_EQ(s.call("POST", "/search/", "{\"query_embedding\": [" + emb + "], \"num_retrieved_samples\": 3.0}").status,
              200);
}

TEST(ServerApi, EmbeddingsAreTheKbEmbeddersVectors) {
    Server s;
    const auto & kb = shared_kb();
    Response r = s.post("/v1/embeddings", {{"input", {kb.texts[0], "def f(x): return x"}}, {"model", "anything"},
                                           {"encoding_format", "float"}});
    ASSERT_EQ(r.status, 200) << r.body;
    json b = body_of(r);
    EXPECT_EQ(b["object"], "list");
    EXPECT_EQ(b["model"], "hashed");
    EXPECT_EQ(b["usage"]["total_tokens"], 0);
    ASSERT_EQ(b["data"].size(), 2u);
    const auto want = kb.embed({kb.texts[0], "def f(x): return x"});
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(b["data"][i]["object"], "embedding");
        EXPECT_EQ(b["data"][i]["index"], i);
        const auto got = b["data"][i]["embedding"].get<std::vector<float>>();
        ASSERT_EQ(got.size(), size_t(kb.dim));
        for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], want[i * kb.dim + j]);
    }
    r = s.post("/v1/embeddings", {{"input", "just one"}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(body_of(r)["data"].size(), 1u);
}

struct BadCase {
    std::string path;
    std::string body;
    int status;
    std::string message_part;
    std::string param;
};

TEST(ServerApi, BadInputsGetPreciseErrors) {
    ApiOptions options;
    options.max_k = 100;
    Server s(options);
    const auto & kb = shared_kb();
    const std::string emb = embedding_json(kb.row(0)).dump();
    std::vector<float> zeros(size_t(kb.dim), 0.f);
    json inf_emb = embedding_json(kb.row(0));
    inf_emb[3] = -1e300;
    json str_emb = embedding_json(kb.row(0));
    str_emb[0] = "a";
    std::string many = "[";
    for (int i = 0; i < 2049; ++i) many += std::string(i ? "," : "") + "\"x\"";
    many += "]";
    const std::vector<BadCase> cases = {
        {"/v1/search", "{not json", 400, "not valid JSON", ""},
        {"/v1/search", "", 400, "not valid JSON", ""},
        {"/v1/search", "[1, 2]", 400, "must be a JSON object (got array)", ""},
        {"/v1/search", "\"text\"", 400, "must be a JSON object (got string)", ""},
        {"/v1/search", "{\"query\": \"a\", \"embedding\": " + emb + "}", 400, "exactly one of 'query'", "query"},
        {"/v1/search", "{\"k\": 3}", 400, "(got neither)", "query"},
        {"/v1/search", "{\"embedding\": [0.1, 0.2]}", 400, "'embedding' has 2 dimensions; this knowledge base expects 64",
         "embedding"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": 0}", 400, "'k' must be between 1 and 100", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": 101}", 400, "'k' must be between 1 and 100 (--max_k) (got 101)", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": 18446744073709551615}", 400, "'k' must be between 1 and 100", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": -3}", 400, "'k' must be between 1 and 100", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": 1e30}", 400, "'k' must be an integer", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": \"5\"}", 400, "'k' must be an integer (got string", "k"},
        {"/v1/search", "{\"query\": \"a b\", \"lambda\": -1}", 400, "'lambda' must be a positive finite number", "lambda"},
        {"/v1/search", "{\"query\": \"a b\", \"lambda\": 0}", 400, "'lambda' must be a positive finite number", "lambda"},
        {"/v1/search", "{\"query\": \"a b\", \"lambda\": \"x\"}", 400, "'lambda' must be a number", "lambda"},
        {"/v1/search", "{\"query\": \"a b\", \"foo\": 1}", 400, "unknown field 'foo'", "foo"},
        {"/v1/search", "{\"query\": \"a b\", \"mode\": \"bogus\"}", 400, "'mode' must be \"sift\" or \"faiss\"", "mode"},
        {"/v1/search", "{\"query\": \"a b\", \"k\": 5, \"candidates\": 3}", 400, "'candidates' (3) must be >= k (5)",
         "candidates"},
        {"/v1/search", "{\"query\": \"a b\", \"candidates\": 100001}", 400, "'candidates' must be between 1 and 100000",
         "candidates"},
        {"/v1/search", "{\"query\": \"a b\", \"nprobe\": 0}", 400, "'nprobe' must be between 1", "nprobe"},
        {"/v1/search", "{\"query\": \"a b\", \"nprobe\": 4}", 400, "nprobe applies to IVF indexes only", ""},
        {"/v1/search", "{\"query\": \"a b\", \"ef_search\": 8}", 400, "ef_search applies to HNSW indexes only", ""},
        {"/v1/search", json{{"embedding", inf_emb}}.dump(), 400, "embedding[3] = -1e+300 is not a finite float32",
         "embedding"},
        {"/v1/search", json{{"embedding", str_emb}}.dump(), 400, "embedding[0] must be a number (got string)", "embedding"},
        {"/v1/search", json{{"embedding", zeros}}.dump(), 400, "'embedding' is all zeros", "embedding"},
        {"/v1/search", "{\"query\": 5}", 400, "'query' must be a string (got integer)", "query"},
        {"/v1/search", "{\"query\": \"\"}", 400, "'query' must not be empty", "query"},
        {"/v1/search", "{\"query\": \"...\"}", 400, "no features for the embedder hashed", "query"},
        {"/v1/search", "{\"k\": 1, \"k\": 2, \"query\": \"a\"}", 400, "duplicate JSON key 'k'", ""},
        {"/v1/embeddings", "{\"input\": []}", 400, "'input' must not be an empty array", "input"},
        {"/v1/embeddings", "{\"input\": 5}", 400, "'input' must be a string or an array of strings (got integer)", "input"},
        {"/v1/embeddings", "{\"input\": [\"a\", 1]}", 400, "input[1] must be a string", "input"},
        {"/v1/embeddings", "{\"model\": \"m\"}", 400, "'input' is required", "input"},
        {"/v1/embeddings", "{\"input\": \"a\", \"encoding_format\": \"base64\"}", 400, "'encoding_format' must be \"float\"",
         "encoding_format"},
        {"/v1/embeddings", "{\"input\": \"a\", \"dimensions\": 3}", 400, "unknown field 'dimensions'", "dimensions"},
        {"/v1/embeddings", "{\"input\": \"a\", \"model\": 3}", 400, "'model' must be a string", "model"},
        {"/v1/embeddings", "{\"input\": " + many + "}", 400, "has 2049 texts; at most 2048", "input"},
    };
    for (const BadCase & c : cases) {
        const Response r = s.call("POST", c.path, c.body);
        EXPECT_EQ(r.status, c.status) << c.path << " " << c.body.substr(0, 120) << " -> " << r.body;
        json b;
        ASSERT_NO_THROW(b = body_of(r)) << r.body;
        ASSERT_TRUE(b.contains("error")) << r.body;
        EXPECT_EQ(b["error"]["code"], c.status);
        EXPECT_EQ(b["error"]["type"], "invalid_request_error");
        const std::string message = b["error"]["message"].get<std::string>();
        EXPECT_NE(message.find(c.message_part), std::string::npos)
            << c.body.substr(0, 120) << "\n  message: " << message << "\n  expected to contain: " << c.message_part;
        if (!c.param.empty()) {
            EXPECT_EQ(b["error"].value("param", ""), c.param) << c.body.substr(0, 120);
        }
    }
}

TEST(ServerApi, UnknownRoutesAndWrongMethods) {
    Server s;
    Response r = s.call("GET", "/nope");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(body_of(r)["error"]["type"], "not_found_error");
    EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("/nope"), std::string::npos);
    r = s.call("GET", "/v1/search");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(header_of(r, "Allow"), "POST");
    EXPECT_EQ(body_of(r)["error"]["code"], 405);
    r = s.call("POST", "/health", "{}");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(header_of(r, "Allow"), "GET");
    r = s.call("DELETE", "/search/");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(s.call("HEAD", "/health").status, 200);
}

TEST(ServerApi, OversizedBodyIs413) {
    ApiOptions options;
    options.max_body_bytes = 100;
    Server s(options);
    const Response r = s.call("POST", "/v1/search", std::string(101, ' '));
    EXPECT_EQ(r.status, 413);
    EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("limit is 100"), std::string::npos);
}

TEST(ServerApi, HealthKbAndSearchWhileLoadingAndWhenReady) {
    Server s({}, nullptr, /*ready=*/false);
    Response r = s.call("GET", "/health");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(body_of(r), (json{{"status", "loading"}}));
    r = s.post("/v1/search", {{"query", "a"}});
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(body_of(r)["error"]["type"], "unavailable_error");
    EXPECT_EQ(s.call("GET", "/v1/kb").status, 503);
    EXPECT_EQ(s.call("GET", "/metrics").status, 200);

    const auto & kb = shared_kb();
    s.api.set_ready(*kb.kb, s.retriever, ct3::server::make_kb_embed_fn(*kb.kb));
    r = s.call("GET", "/health");
    ASSERT_EQ(r.status, 200);
    const json h = body_of(r);
    EXPECT_EQ(h["status"], "ok");
    EXPECT_EQ(h["kb"]["count"], kb.size());
    EXPECT_EQ(h["kb"]["dim"], kb.dim);
    EXPECT_EQ(h["kb"]["embedder"], "hashed");
    EXPECT_EQ(h["kb"]["index"], "Flat");
    r = s.call("GET", "/v1/kb");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(body_of(r)["count"], kb.size());
    EXPECT_EQ(body_of(r)["embedder"]["type"], "hashed");
}

TEST(ServerApi, TextQueriesWithoutAnEmbedderAre503) {
    ct3::test::MemoryKb bare(shared_kb().row(0), shared_kb().dim);
    ct3::server::Metrics metrics;
    ct3::kb::Retriever retriever(bare);
    Api api({}, metrics);
    api.set_ready(bare, retriever, {});
    Response r = api.handle({"POST", "/v1/search", "{\"query\": \"x\"}", {}});
    EXPECT_EQ(r.status, 503);
    r = api.handle({"POST", "/v1/search", json{{"embedding", shared_kb().row(0)}, {"k", 1}}.dump(), {}});
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_THROW(ct3::server::make_kb_embed_fn(bare), ct3::Error);
}

TEST(ServerApi, ApiKeyGuardsEverythingButHealthAndMetrics) {
    auto key = std::make_shared<ct3::server::ApiKey>("s3cret-key-0123");
    Server s({}, key);
    const std::string body = json{{"query", shared_kb().texts[0]}, {"k", 2}}.dump();
    Response r = s.call("POST", "/v1/search", body);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(header_of(r, "WWW-Authenticate"), "Bearer");
    EXPECT_EQ(body_of(r)["error"]["type"], "authentication_error");
    EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("missing API key"), std::string::npos);
    r = s.call("POST", "/v1/search", body, {{"authorization", "Bearer wrong"}});
    EXPECT_EQ(r.status, 401);
    EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("invalid API key"), std::string::npos);
    EXPECT_EQ(s.call("POST", "/v1/search", body, {{"authorization", "Basic s3cret-key-0123"}}).status, 401);
    EXPECT_EQ(s.call("POST", "/v1/search", body, {{"authorization", "Bearer s3cret-key-0123"}}).status, 200);
    EXPECT_EQ(s.call("POST", "/v1/search", body, {{"authorization", "bearer s3cret-key-0123"}}).status, 200);
    EXPECT_EQ(s.call("POST", "/v1/search", body, {{"x-api-key", "s3cret-key-0123"}}).status, 200);
    EXPECT_EQ(s.call("POST", "/v1/search", body, {{"x-api-key", "s3cret-key-012"}}).status, 401);
    EXPECT_EQ(s.call("GET", "/nope").status, 401) << "unknown routes reveal nothing without a key";
    EXPECT_EQ(s.call("GET", "/health").status, 200);
    EXPECT_EQ(s.call("GET", "/metrics").status, 200);
    EXPECT_EQ(key->masked(), "****0123");
}

TEST(ServerApi, ApiKeyFile) {
    ct3::test::TempDir dir;
    const auto path = dir.path() / "key.txt";
    ct3::test::write_file(path, "abc-123\n");
    ct3::server::ApiKey key = ct3::server::ApiKey::from_file(path);
    EXPECT_TRUE(key.accepts("Bearer abc-123", ""));
    EXPECT_FALSE(key.accepts("Bearer abc-123\n", ""));
    ct3::test::write_file(path, "abc-123\r\n");
    EXPECT_TRUE(ct3::server::ApiKey::from_file(path).accepts("", "abc-123"));
    ct3::test::write_file(path, "\n");
    try {
        ct3::server::ApiKey::from_file(path);
        FAIL() << "an empty key file must be refused";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("key.txt"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ct3::server::ApiKey::from_file(dir.path() / "missing.txt"), ct3::Error);
}

TEST(ServerApi, ConstantTimeEqual) {
    using ct3::server::constant_time_equal;
    EXPECT_TRUE(constant_time_equal("", ""));
    EXPECT_TRUE(constant_time_equal("key", "key"));
    EXPECT_FALSE(constant_time_equal("key", "kez"));
    EXPECT_FALSE(constant_time_equal("key", "key "));
    EXPECT_FALSE(constant_time_equal("", "k"));
    EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
    EXPECT_TRUE(constant_time_equal(std::string(10000, 'x'), std::string(10000, 'x')));
}

TEST(ServerApi, MetricsCountRequestsSearchesAndErrors) {
    Server s;
    const auto & kb = shared_kb();
    ASSERT_EQ(s.post("/v1/search", {{"query", kb.texts[1]}, {"k", 3}}).status, 200);
    ASSERT_EQ(s.post("/v1/search", {{"query", kb.texts[2]}, {"k", 3}, {"mode", "faiss"}}).status, 200);
    ASSERT_EQ(s.post("/v1/search", {{"k", 3}}).status, 400);
    ASSERT_EQ(s.post("/v1/embeddings", {{"input", {"a b c", "d e f"}}}).status, 200);
    ASSERT_EQ(s.call("GET", "/zzz").status, 404);
    EXPECT_EQ(s.metrics.requests("/v1/search", 200), 2u);
    const Response r = s.call("GET", "/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type.rfind("text/plain; version=0.0.4", 0), 0u);
    const std::string & m = r.body;
    for (const std::string & line : std::vector<std::string>{
             "ct3_http_requests_total{endpoint=\"/v1/search\",status=\"200\"} 2",
          "ct3_http_requests_total{endpoint=\"/v1/search\",status=\"400\"} 1",
          "ct3_http_requests_total{endpoint=\"other\",status=\"404\"} 1", "ct3_http_errors_total{code=\"400\"} 1",
          "ct3_http_errors_total{code=\"404\"} 1", "ct3_search_queries_total{mode=\"sift\"} 1",
          "ct3_search_queries_total{mode=\"faiss\"} 1", "ct3_embed_texts_total 4",
          "ct3_kb_entries " + std::to_string(kb.size()), "ct3_kb_dim 64", "ct3_kb_ready 1",
          "ct3_http_request_duration_seconds_count{endpoint=\"/v1/search\"} 3",
          "ct3_http_request_duration_seconds_bucket{endpoint=\"/v1/search\",le=\"+Inf\"} 3",
          "# TYPE ct3_http_request_duration_seconds histogram", "ct3_uptime_seconds "})
        EXPECT_NE(m.find(line), std::string::npos) << "missing: " << line << "\n" << m;
}

TEST(ServerApi, NeverThrowsOnGarbage) {
    Server s;
    const std::string inputs[] = {std::string("\xff\xfe\x00{", 4), "{\"query\": \"\xc3\x28\"}", "{\"query_embedding\": [[[1]]]}",
                                  std::string(40, '['), "{\"embedding\": {}}", "null", "1e999", "{\"input\": [null]}",
                                  "{\"\xe2\x82\xac\": 1}"};
    for (const auto & in : inputs)
        for (const char * path : {"/v1/search", "/search/", "/v1/embeddings"}) {
            const Response r = s.call("POST", path, in);
            EXPECT_GE(r.status, 400) << path << " " << in;
            EXPECT_LT(r.status, 500) << path << " " << in << " -> " << r.body;
            EXPECT_NO_THROW(json::parse(r.body)) << r.body;
        }
}

}  // namespace
