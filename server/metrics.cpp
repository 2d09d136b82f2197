#include "server/metrics.h"

#include <fmt/format.h>

namespace ct3::server {

Metrics::Metrics()
    : start_(std::chrono::steady_clock::now()),
      start_unix_seconds_(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()) {
}

void Metrics::observe_request(const std::string & endpoint, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_[{endpoint, status}] += 1;
    Histogram & h = durations_[endpoint];
    size_t b = 0;
    while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) ++b;
    if (b < kDurationBuckets.size()) h.buckets[b] += 1;  // else only +Inf (= count) holds it
    h.count += 1;
    h.sum += seconds;
    if (status >= 400) errors_[status] += 1;
}

void Metrics::count_search(const std::string & mode) {
    std::lock_guard<std::mutex> lock(mutex_);
    searches_[mode] += 1;
}

void Metrics::count_embedded(int64_t texts) {
    std::lock_guard<std::mutex> lock(mutex_);
    embedded_ += uint64_t(texts);
}

void Metrics::set_kb(int64_t entries, int64_t dim) {
    std::lock_guard<std::mutex> lock(mutex_);
    kb_entries_ = entries;
    kb_dim_ = dim;
    kb_ready_ = true;
}

uint64_t Metrics::requests(const std::string & endpoint, int status) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = requests_.find({endpoint, status});
    return it == requests_.end() ? 0 : it->second;
}

namespace {

// Label values are routes, modes and numbers chosen by the server, but escape anyway (the format
// requires \\, \" and \n to be escaped).
std::string escape_label(const std::string & value) {
    std::string out;
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

}  // namespace

std::string Metrics::render() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    auto header = [&](const char * name, const char * type, const char * help) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    };
    header("ct3_http_requests_total", "counter", "HTTP requests by route and status code.");
    for (const auto & [key, n] : requests_)
        out += fmt::format("ct3_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", escape_label(key.first),
                           key.second, n);
    header("ct3_http_request_duration_seconds", "histogram", "Time from request parsed to response ready.");
    for (const auto & [endpoint, h] : durations_) {
        const std::string label = escape_label(endpoint);
        uint64_t cumulative = 0;
        for (size_t b = 0; b < kDurationBuckets.size(); ++b) {
            cumulative += h.buckets[b];
            out += fmt::format("ct3_http_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{}\"}} {}\n", label,
                               kDurationBuckets[b], cumulative);
        }
        out += fmt::format("ct3_http_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {}\n", label,
                           h.count);
        out += fmt::format("ct3_http_request_duration_seconds_sum{{endpoint=\"{}\"}} {}\n", label, h.sum);
        out += fmt::format("ct3_http_request_duration_seconds_count{{endpoint=\"{}\"}} {}\n", label, h.count);
    }
    header("ct3_http_errors_total", "counter", "HTTP responses with status >= 400, by status code.");
    for (const auto & [code, n] : errors_) out += fmt::format("ct3_http_errors_total{{code=\"{}\"}} {}\n", code, n);
    header("ct3_search_queries_total", "counter", "Searches run, by mode (sift or faiss).");
    for (const auto & [mode, n] : searches_)
        out += fmt::format("ct3_search_queries_total{{mode=\"{}\"}} {}\n", escape_label(mode), n);
    header("ct3_embed_texts_total", "counter", "Texts embedded with the knowledge base's embedder.");
    out += fmt::format("ct3_embed_texts_total {}\n", embedded_);
    header("ct3_kb_ready", "gauge", "1 once the knowledge base is loaded.");
    out += fmt::format("ct3_kb_ready {}\n", kb_ready_ ? 1 : 0);
    header("ct3_kb_entries", "gauge", "Entries in the knowledge base.");
    out += fmt::format("ct3_kb_entries {}\n", kb_entries_);
    header("ct3_kb_dim", "gauge", "Embedding dimension of the knowledge base.");
    out += fmt::format("ct3_kb_dim {}\n", kb_dim_);
    header("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.");
    out += fmt::format("process_start_time_seconds {:.3f}\n", start_unix_seconds_);
    header("ct3_uptime_seconds", "gauge", "Seconds since the server started.");
    out += fmt::format("ct3_uptime_seconds {:.3f}\n",
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    return out;
}

}  // namespace ct3::server
