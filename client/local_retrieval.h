// Neighbours from a KB folder opened in this process (the original CT3's in-process mode, which
// its eval scripts use): the KB's own embedder and the same FAISS/SIFT retriever as ct3-server.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>

#include "client/neighbour_source.h"

namespace ct3::kb {
class KnowledgeBase;
class Retriever;
}  // namespace ct3::kb

namespace ct3::client {

class LocalRetrieval : public NeighbourSource {
public:
    // Opens and verifies the KB (checksums, embedder identity); errors name the folder and file.
    explicit LocalRetrieval(const std::filesystem::path & kb_dir, const std::string & embedder_device = "cpu");
    ~LocalRetrieval() override;

    std::vector<float> embed(const std::string & text) override;
    std::vector<Neighbour> search(const SearchRequest & request) override;
    KbInfo kb_info() override;
    std::string describe() const override;

private:
    std::unique_ptr<kb::KnowledgeBase> kb_;
    std::unique_ptr<kb::Retriever> retriever_;
    std::mutex embed_mutex_;  // the embedder is not thread-safe
};

}  // namespace ct3::client
