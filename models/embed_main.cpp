// ct3-embed: sentence embeddings from the command line, one JSON object per text on stdout.
//
//   ct3-embed -e hashed "How many clips did Natalia sell?" "def add(a, b): return a + b"
//   ct3-embed -e path/to/all-MiniLM-L6-v2 < texts.txt            (one text per line)
//   ct3-embed -e hashed --similarity "a question" "another question"
//
// Output lines: {"index": i, "embedding": [...]} — or, with --similarity, the cosine matrix.
// The embedder's identity (what a KB manifest records) is logged at info level.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/embedder.h"
#include "models/error.h"
#include "models/log.h"

int main(int argc, char ** argv) {
    CLI::App app{"ct3-embed: sentence embeddings (hashed TF-IDF or a sentence-transformers folder)"};
    std::string spec = "hashed", device = "cpu", log_level;
    std::vector<std::string> texts;
    int64_t batch_size = 32, max_length = 0;
    bool similarity = false;
    app.add_option("-e,--embedder", spec, "hashed[:dim=..,buckets=..,seed=..,idf=PATH] or a sentence-transformers folder")
        ->envname("CT3_EMBEDDER");
    app.add_option("texts", texts, "Texts to embed (default: one per line from stdin)");
    app.add_option("--device", device, "cpu, cuda, cuda:N (neural embedders)");
    app.add_option("--batch-size", batch_size, "Texts per forward pass")->check(CLI::Range(int64_t{1}, int64_t{4096}));
    app.add_option("--max-length", max_length, "Token limit per text (0 = from the model folder)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
    app.add_flag("--similarity", similarity, "Print the cosine-similarity matrix of the texts instead");
    ct3::add_log_flags(app, log_level);
    CLI11_PARSE(app, argc, argv);
    try {
        ct3::log_init(log_level);
        if (texts.empty()) {
            for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
        }
        CT3_CHECK(!texts.empty(), ct3::ErrorKind::invalid_argument, "no texts given (pass them as arguments or on stdin)");
        ct3::EmbedderOptions options;
        options.device = device;
        options.batch_size = batch_size;
        options.max_length = max_length;
        auto embedder = ct3::load_embedder(spec, options);
        ct3::logger("model")->info("embedder {}", embedder->identity().dump());
        at::Tensor vectors = embedder->embed(texts);
        if (similarity) {
            at::Tensor cos = vectors.matmul(vectors.t()).contiguous();
            for (int64_t i = 0; i < cos.size(0); ++i) {
                const float * row = cos[i].data_ptr<float>();
                std::cout << nlohmann::json(std::vector<float>(row, row + cos.size(1))).dump() << "\n";
            }
            return 0;
        }
        for (int64_t i = 0; i < vectors.size(0); ++i) {
            at::Tensor row = vectors[i].contiguous();
            const float * p = row.data_ptr<float>();
            std::cout << nlohmann::json{{"index", i}, {"embedding", std::vector<float>(p, p + row.numel())}}.dump() << "\n";
        }
        return 0;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "ct3-embed: error: %s\n", e.what());
        return 1;
    }
}
