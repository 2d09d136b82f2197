// A small in-memory KB for the server tests: ~130 short math and code texts (five of them stored
// twice, like identical records from two datasets) embedded with a real HashedEmbedder (dim 64)
// fitted on them, so text queries go through the same embedder as a real KB.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "models/hashed_embedder.h"
#include "tests/memory_kb.h"

namespace ct3::test {

struct ServerKb {
    std::vector<std::string> texts;
    std::vector<std::string> datasets;
    std::unique_ptr<ct3::HashedEmbedder> embedder;
    std::unique_ptr<MemoryKb> kb;
    int64_t dim = 64;
    std::vector<int64_t> duplicated;  // ids whose text appears again at the end of the KB

    ServerKb() {
        const char * names[] = {"Alice", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro"};
        const char * items[] = {"apples", "pencils", "marbles", "cookies", "books", "stamps"};
        for (int i = 0; i < 96; ++i) {
            const char * name = names[i % 8];
            const char * item = items[(i / 8) % 6];
            const int a = 3 + i % 7, b = 2 + (i * 5) % 11;
            texts.push_back(fmt::format("{} has {} {} and buys {} more. How many {} does {} have now? {} + {} = {}.",
                                        name, a, item, b, item, name, a, b, a + b));
            datasets.push_back("gsm8k");
        }
        const char * ops[] = {"add", "subtract", "multiply", "divide", "power", "modulo"};
        const char * syms[] = {"+", "-", "*", "/", "**", "%"};
        for (int i = 0; i < 30; ++i) {
            texts.push_back(fmt::format("def {}_{}(a, b):\n    \"\"\"Return a {} b.\"\"\"\n    return a {} b\n",
                                        ops[i % 6], i, syms[i % 6], syms[i % 6]));
            datasets.push_back("python_code");
        }
        for (int64_t id : {3, 17, 40, 99, 110}) {
            duplicated.push_back(id);
            texts.push_back(texts[size_t(id)]);
            datasets.push_back("mawps");
        }
        ct3::HashedEmbedderConfig config;
        config.dim = dim;
        config.n_buckets = 1 << 16;
        embedder = std::make_unique<ct3::HashedEmbedder>(config);
        embedder->fit(texts);
        kb = std::make_unique<MemoryKb>(embed(texts), dim, texts, datasets);
        kb->set_embedder(embedder.get(), embedder->identity());
    }

    std::vector<float> embed(const std::vector<std::string> & batch) const {
        const at::Tensor t = embedder->embed(batch).contiguous();
        return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    }
    std::vector<float> row(int64_t id) const { return {kb->embedding(id), kb->embedding(id) + dim}; }
    int64_t size() const { return int64_t(texts.size()); }
};

}  // namespace ct3::test
