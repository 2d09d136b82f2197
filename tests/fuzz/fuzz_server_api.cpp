// libFuzzer target for the server's request handling: the first byte picks the route, the rest is
// the request body, and Api::handle runs on a small in-memory KB (64 random unit vectors, d = 8)
// with a deterministic stand-in embedder. Beyond ASan/UBSan findings, it aborts when a response is
// a 5xx (an unexpected exception is a bug: bad input must be a 4xx) or a JSON route answers
// something that does not parse.
//
// Built as a fuzzer with clang (-DCT3_BUILD_FUZZERS=ON, scripts/fuzz.sh) and always as a replay
// driver (fuzz_replay_main.cpp) that runs tests/fuzz/corpus as a ctest.
// Torch-free on purpose: the clang build compiles only server/, kb/ retrieval and a few models/ files.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kb/retriever.h"
#include "server/api.h"
#include "server/metrics.h"
#include "tests/memory_kb.h"

namespace {

constexpr int64_t kDim = 8;

std::vector<float> random_unit_rows(int64_t n, int64_t d) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(n * d));
    for (int64_t i = 0; i < n; ++i) {
        double norm = 0;
        for (int64_t j = 0; j < d; ++j) norm += std::pow(x[size_t(i * d + j)] = normal(rng), 2);
        for (int64_t j = 0; j < d; ++j) x[size_t(i * d + j)] = float(x[size_t(i * d + j)] / std::sqrt(norm));
    }
    return x;
}

// Deterministic text -> unit vector (bytes hashed into kDim buckets); "" -> zeros, like a real embedder.
std::vector<float> fake_embed(const std::vector<std::string> & texts) {
    std::vector<float> out(texts.size() * kDim, 0.f);
    for (size_t t = 0; t < texts.size(); ++t) {
        float * v = &out[t * kDim];
        uint64_t h = 1469598103934665603ULL;
        for (unsigned char c : texts[t]) {
            h = (h ^ c) * 1099511628211ULL;
            v[h % kDim] += (h >> 32) & 1 ? 1.f : -1.f;
        }
        double norm = 0;
        for (int64_t i = 0; i < kDim; ++i) norm += double(v[i]) * v[i];
        if (norm > 0)
            for (int64_t i = 0; i < kDim; ++i) v[i] = float(v[i] / std::sqrt(norm));
    }
    return out;
}

struct State {
    std::vector<std::string> texts;
    ct3::test::MemoryKb kb;
    ct3::kb::Retriever retriever;
    ct3::server::Metrics metrics;
    ct3::server::Api api;

    static std::vector<std::string> make_texts() {
        std::vector<std::string> t;
        for (int i = 0; i < 64; ++i) t.push_back(i % 8 == 0 ? "repeated text" : "entry " + std::to_string(i));
        return t;
    }
    static ct3::server::ApiOptions options() {
        ct3::server::ApiOptions o;
        o.max_k = 64;  // keeps SIFT cheap: the fuzzer hunts parser bugs, not slow searches
        o.default_candidates = 32;
        o.max_embed_inputs = 16;
        o.max_body_bytes = 1 << 16;
        return o;
    }
    State()
        : texts(make_texts()), kb(random_unit_rows(64, kDim), kDim, texts), retriever(kb), api(options(), metrics) {
        api.set_ready(kb, retriever, fake_embed);
    }
};

struct Route {
    const char * method;
    const char * path;
};

constexpr Route kRoutes[] = {
    {"POST", "/v1/search"}, {"POST", "/search/"}, {"POST", "/v1/embeddings"}, {"POST", "/v1/search"},
    {"POST", "/search/"},   {"GET", "/health"},   {"GET", "/v1/kb"},          {"GET", "/metrics"},
    {"POST", "/health"},    {"PUT", "/nope"},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static State * state = new State();  // lives for the whole run (never destroyed: no exit races)
    if (size == 0) return 0;
    const Route & route = kRoutes[data[0] % (sizeof kRoutes / sizeof kRoutes[0])];
    ct3::server::Request request;
    request.method = route.method;
    request.path = route.path;
    request.body.assign(reinterpret_cast<const char *>(data + 1), size - 1);
    const ct3::server::Response response = state->api.handle(request);
    if (response.status < 200 || response.status >= 500) {
        std::fprintf(stderr, "fuzz: %s %s answered %d: %s\n", route.method, route.path, response.status,
                     response.body.c_str());
        std::abort();
    }
    if (response.content_type == "application/json" &&
        !nlohmann::json::accept(response.body)) {
        std::fprintf(stderr, "fuzz: %s %s answered invalid JSON: %s\n", route.method, route.path,
                     response.body.c_str());
        std::abort();
    }
    return 0;
}
