// Metrics: the server's counters and latency histograms, rendered in the Prometheus text format
// (version 0.0.4) for GET /metrics.
//
// Exported series:
//   ct3_http_requests_total{endpoint,status}          counter
//   ct3_http_request_duration_seconds{endpoint}       histogram (fixed buckets, kDurationBuckets)
//   ct3_http_errors_total{code}                       counter (every response with status >= 400)
//   ct3_search_queries_total{mode}                    counter
//   ct3_embed_texts_total                             counter (texts embedded for queries and /v1/embeddings)
//   ct3_kb_entries, ct3_kb_dim                        gauges (0 while the KB loads)
//   ct3_kb_ready                                      gauge (1 once the KB is loaded)
//   process_start_time_seconds, ct3_uptime_seconds    gauges
// `endpoint` is the route ("/v1/search", "/search/", ...), never the raw path: an unknown path is
// counted as "other", so a scanner cannot blow up the number of series.
// Thread-safe: one mutex; a request takes it twice (observe) and for nanoseconds, far below the
// cost of the search it measures.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace ct3::server {

inline constexpr std::array<double, 14> kDurationBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                             0.1,    0.25,  0.5,    1.0,   2.5,   5.0,  10.0};

class Metrics {
public:
    Metrics();

    // One finished HTTP request: its route, status and wall time.
    void observe_request(const std::string & endpoint, int status, double seconds);
    void count_search(const std::string & mode);
    void count_embedded(int64_t texts);
    void set_kb(int64_t entries, int64_t dim);

    // The exposition text (Content-Type: text/plain; version=0.0.4).
    std::string render() const;

    // For tests: the current value of ct3_http_requests_total{endpoint,status}.
    uint64_t requests(const std::string & endpoint, int status) const;

private:
    struct Histogram {
        std::array<uint64_t, kDurationBuckets.size()> buckets{};  // non-cumulative counts
        uint64_t count = 0;
        double sum = 0;
    };

    mutable std::mutex mutex_;
    std::map<std::pair<std::string, int>, uint64_t> requests_;
    std::map<std::string, Histogram> durations_;
    std::map<int, uint64_t> errors_;
    std::map<std::string, uint64_t> searches_;
    uint64_t embedded_ = 0;
    int64_t kb_entries_ = 0;
    int64_t kb_dim_ = 0;
    bool kb_ready_ = false;
    std::chrono::steady_clock::time_point start_;
    double start_unix_seconds_ = 0;
};

}  // namespace ct3::server
