// ct3-server: the retrieval daemon. Serves a knowledge base built by ct3-build-kb over HTTP.
//
//   ct3-server --knowledge_base_path kb_gsm8k --port 8000 [--only_faiss] [--api-key-file key.txt]
//
// It listens first and loads the KB in the background: GET /health answers 503 {"status":"loading"}
// until the KB is ready, then 200. With --port 0 it picks a free port. Either way, once listening it
// prints one JSON line on stdout, {"event":"listening","host":...,"port":N}, for scripts to read.
// SIGTERM or SIGINT: stop accepting, answer the requests in flight, exit 0. A KB that fails to load
// (missing, corrupt, checksum mismatch) is logged and the process exits 1.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kb/knowledge_base.h"
#include "kb/retriever.h"
#include "models/error.h"
#include "models/log.h"
#include "models/program.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/text_embedder.h"

namespace {

struct Options {
    std::string kb_path;
    bool only_faiss = false;
    std::string api_key_file;
    std::string device = "cpu";
    bool no_verify = false;
    bool mmap_index = false;
    int64_t batch_window_us = 0;
    std::string log_level;
    ct3::server::HttpOptions http;
    ct3::server::ApiOptions api;
};

int run(Options & o) {
    auto log = ct3::logger("server");
    std::shared_ptr<const ct3::server::ApiKey> key;
    if (!o.api_key_file.empty()) {
        key = std::make_shared<ct3::server::ApiKey>(ct3::server::ApiKey::from_file(o.api_key_file));
        log->info("API key required ({}); /health and /metrics stay open", key->masked());
    }
    o.api.default_mode = o.only_faiss ? ct3::kb::SearchMode::faiss : ct3::kb::SearchMode::sift;
    o.api.max_body_bytes = o.http.max_body_bytes;

    // Signals go to one thread that waits for them (sigwait), never to a random worker: block them
    // here, before any thread exists, so every thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);  // internal: wakes the signal thread when we exit for another reason
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    ct3::server::Metrics metrics;
    ct3::server::Api api(o.api, metrics, key);
    ct3::server::HttpServer server(api, metrics, o.http);
    const int port = server.bind();
    std::printf("%s\n", nlohmann::json{{"event", "listening"}, {"host", o.http.host}, {"port", port}}.dump().c_str());
    std::fflush(stdout);
    log->info("listening on http://{}:{} ({} worker threads); loading {}", o.http.host, port,
              o.http.threads > 0 ? o.http.threads : ct3::server::default_http_threads(), o.kb_path);

    std::thread signal_thread([&] {
        int sig = 0;
        while (sigwait(&signals, &sig) == 0) {
            if (sig == SIGUSR1) return;
            log->info("received {}: no new connections; draining {} in-flight request(s)",
                      sig == SIGTERM ? "SIGTERM" : "SIGINT", server.in_flight());
            server.stop();
            return;
        }
    });

    // Declared before the loader so they outlive it; destroyed after the server has drained.
    std::unique_ptr<ct3::kb::KnowledgeBase> kb;
    std::unique_ptr<ct3::kb::Retriever> retriever;
    std::atomic<bool> load_failed{false};
    std::thread loader([&] {
        try {
            const auto start = std::chrono::steady_clock::now();
            ct3::kb::OpenOptions open;
            open.verify_checksums = !o.no_verify;
            open.embedder_device = o.device;
            open.mmap_index = o.mmap_index;
            kb = ct3::kb::KnowledgeBase::open(o.kb_path, open);
            ct3::kb::RetrieverOptions ropts;
            ropts.batch_window_us = o.batch_window_us;
            retriever = std::make_unique<ct3::kb::Retriever>(*kb, ropts);
            api.set_ready(*kb, *retriever, ct3::server::make_kb_embed_fn(*kb));
            log->info("knowledge base ready: {} entries, dim {}, default mode {} ({:.2f} s)", kb->size(), kb->dim(),
                      ct3::kb::search_mode_name(o.api.default_mode),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        } catch (const std::exception & e) {
            log->error("cannot load the knowledge base '{}': {}", o.kb_path, e.what());
            load_failed = true;
            server.stop();
        }
    });

    server.run();
    loader.join();
    pthread_kill(signal_thread.native_handle(), SIGUSR1);
    signal_thread.join();
    return load_failed ? 1 : 0;
}

}  // namespace

int main(int argc, char ** argv) {
    Options o;
    CLI::App app{"ct3-server: retrieval over a ct3 knowledge base (FAISS and SIFT) over HTTP"};
    app.add_option("--knowledge_base_path,--kb,--knowledge-base-path", o.kb_path, "KB folder written by ct3-build-kb")
        ->required();
    app.add_flag("--only_faiss,--only-faiss", o.only_faiss,
                 "Default mode faiss (top-k by |cos|) instead of sift for /search/ and /v1/search");
    app.add_option("--host", o.http.host, "Address to listen on")->capture_default_str();
    app.add_option("--port", o.http.port, "Port; 0 = any free port")->capture_default_str()->check(CLI::Range(0, 65535));
    app.add_option("-t,--threads", o.http.threads, "HTTP worker threads, one per open connection (0 = 4 per core, at least 16)")
        ->capture_default_str()->check(CLI::Range(0, 4096));
    app.add_option("--api-key-file,--api_key_file", o.api_key_file,
                   "File holding the API key clients must send (Authorization: Bearer KEY or X-API-Key)");
    app.add_option("--max_body_bytes,--max-body-bytes", o.http.max_body_bytes, "Largest request body (413 above)")
        ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 40));
    app.add_option("--max_k,--max-k", o.api.max_k, "Largest k / num_retrieved_samples accepted (at most 10000)")
        ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(10000)));
    app.add_option("--candidates", o.api.default_candidates, "Default FAISS pre-selection size K")
        ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(100000)));
    app.add_option("--batch_window_us,--batch-window-us", o.batch_window_us,
                   "Wait this long for concurrent queries to share one FAISS call")
        ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1000000)));
    app.add_flag("--no-verify,--no_verify", o.no_verify, "Skip the sha256 check of the KB files (faster start)");
    app.add_flag("--mmap_index,--mmap-index", o.mmap_index, "Read IVF inverted lists from disk on demand");
    app.add_option("--device", o.device, "Device of the KB's embedder: cpu, cuda, cuda:N")->capture_default_str();
    app.add_option("--read_timeout,--read-timeout", o.http.read_timeout_s, "Seconds to wait for a request")
        ->capture_default_str()->check(CLI::Range(1, 3600));
    app.add_option("--write_timeout,--write-timeout", o.http.write_timeout_s, "Seconds to wait while sending")
        ->capture_default_str()->check(CLI::Range(1, 3600));
    ct3::add_log_flags(app, o.log_level);
    CLI11_PARSE(app, argc, argv);

    return ct3::run_program("ct3-server", [&] {
        ct3::log_init(o.log_level);
        return run(o);
    });
}
