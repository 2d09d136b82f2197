// Sentence embedders: text -> unit vectors used to build and query the knowledge base.
//
// Two families implement the interface: HashedEmbedder (weight-free hashed TF-IDF with a random
// projection, the default that runs out of the box) and SentenceEmbedder (a sentence-transformers
// folder holding a BERT-family or MPNet encoder). A KB manifest stores identity(); a KB built with
// one embedder must be queried with an embedder of equal identity.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace ct3 {

class Embedder {
public:
    virtual ~Embedder() = default;

    // [n, dim] float32 CPU tensor; every row has L2 norm 1, except the rows of texts that yield no
    // features at all (e.g. the empty string for the hashed embedder), which are all zeros.
    virtual at::Tensor embed(const std::vector<std::string> & texts) = 0;
    virtual int64_t dim() const = 0;
    // {"type": "...", "name"/"path": ..., params..., "dim": ...}: two embedders with equal identity()
    // produce identical vectors for identical texts.
    virtual nlohmann::json identity() const = 0;
};

struct EmbedderOptions {
    std::string device = "cpu";  // "cpu", "cuda", "cuda:N" (neural embedders only)
    int64_t batch_size = 32;     // texts per forward pass (neural embedders only)
    int64_t max_length = 0;      // 0 = from the folder (sentence_bert_config / tokenizer_config), else 512
};

// `spec` is one of
//   "hashed" | "hashed:dim=384,buckets=1048576,ngram_min=3,ngram_max=5,seed=0,idf=PATH"
//   a sentence-transformers folder (config.json, modules.json, model.safetensors, tokenizer files).
// Throws ct3::Error naming the spec when it is neither.
std::unique_ptr<Embedder> load_embedder(const std::string & spec, const EmbedderOptions & options = {});

}  // namespace ct3
