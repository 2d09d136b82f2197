// MemoryKb: a KnowledgeBase held in memory over a real FAISS flat inner-product index, for tests
// (and the fuzzer) that need a KB without files. Header-only and torch-free.
// Texts default to "text <id>" and datasets to "mem"; an embedder can be attached (not owned).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <faiss/IndexFlat.h>
#include <nlohmann/json.hpp>

#include "kb/knowledge_base.h"
#include "models/error.h"

namespace ct3::test {

class MemoryKb : public ct3::kb::KnowledgeBase {
public:
    // x: [n, d] row-major (unit rows, as a real KB stores). texts/datasets: empty or n entries.
    MemoryKb(std::vector<float> x, int64_t d, std::vector<std::string> texts = {},
             std::vector<std::string> datasets = {})
        : x_(std::move(x)), d_(d), texts_(std::move(texts)), datasets_(std::move(datasets)), index_(d) {
        const int64_t n = int64_t(x_.size()) / d;
        if (!texts_.empty() && int64_t(texts_.size()) != n) throw std::invalid_argument("MemoryKb: texts.size() != n");
        if (!datasets_.empty() && int64_t(datasets_.size()) != n)
            throw std::invalid_argument("MemoryKb: datasets.size() != n");
        index_.add(n, x_.data());
        manifest_ = {{"format", "ct3-kb"}, {"count", n}, {"dim", d}, {"index", {{"factory", "Flat"}, {"ntotal", n}}}};
    }

    // Attaches an embedder (not owned) with its identity; without one embedder() throws unavailable.
    void set_embedder(ct3::Embedder * embedder, nlohmann::json identity) {
        embedder_ = embedder;
        identity_ = std::move(identity);
    }

    const std::filesystem::path & dir() const override { return dir_; }
    const nlohmann::json & manifest() const override { return manifest_; }
    int64_t size() const override { return index_.ntotal; }
    int64_t dim() const override { return d_; }
    const faiss::Index & index() const override { return index_; }
    const float * embedding(int64_t id) const override { return &x_[size_t(id * d_)]; }
    ct3::kb::Entry entry(int64_t id) const override {
        if (id < 0 || id >= size())
            ct3::fail(ct3::ErrorKind::not_found, "entry {} out of range (size {})", id, size());
        return {id, dataset(id), id, text(id)};
    }
    std::string text(int64_t id) const override {
        return texts_.empty() ? "text " + std::to_string(id) : texts_[size_t(id)];
    }
    std::string dataset(int64_t id) const override { return datasets_.empty() ? "mem" : datasets_[size_t(id)]; }
    ct3::Embedder & embedder() override {
        if (!embedder_) throw ct3::Error(ct3::ErrorKind::unavailable, "no embedder");
        return *embedder_;
    }
    const nlohmann::json & embedder_identity() const override { return identity_; }

private:
    std::vector<float> x_;
    int64_t d_;
    std::vector<std::string> texts_;
    std::vector<std::string> datasets_;
    faiss::IndexFlatIP index_;
    std::filesystem::path dir_;
    nlohmann::json manifest_;
    nlohmann::json identity_ = {{"type", "memory"}};
    ct3::Embedder * embedder_ = nullptr;
};

}  // namespace ct3::test
