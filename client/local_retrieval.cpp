#include "client/local_retrieval.h"

#include <torch/torch.h>

#include "kb/knowledge_base.h"
#include "kb/retriever.h"
#include "models/embedder.h"
#include "models/error.h"

namespace ct3::client {

LocalRetrieval::LocalRetrieval(const std::filesystem::path & kb_dir, const std::string & embedder_device) {
    kb::OpenOptions options;
    options.embedder_device = embedder_device;
    kb_ = kb::KnowledgeBase::open(kb_dir, options);
    retriever_ = std::make_unique<kb::Retriever>(*kb_);
}

LocalRetrieval::~LocalRetrieval() = default;

std::string LocalRetrieval::describe() const { return "KB folder " + kb_->dir().string(); }

std::vector<float> LocalRetrieval::embed(const std::string & text) {
    at::Tensor e;
    {
        std::lock_guard<std::mutex> lock(embed_mutex_);
        e = kb_->embedder().embed({text}).contiguous();
    }
    CT3_CHECK(e.abs().sum().item<double>() > 0, ErrorKind::invalid_argument,
              "the KB's embedder finds no features in the text '{:.80}' (all-zero embedding)", text);
    const float * p = e.data_ptr<float>();
    return std::vector<float>(p, p + e.size(1));
}

std::vector<Neighbour> LocalRetrieval::search(const SearchRequest & request) {
    std::vector<float> query = request.embedding.empty() ? embed(request.query) : request.embedding;
    CT3_CHECK(static_cast<int64_t>(query.size()) == kb_->dim(), ErrorKind::invalid_argument,
              "query embedding has {} dims but the KB {} has {}", query.size(), kb_->dir().string(), kb_->dim());
    kb::SearchParams params;
    params.k = request.k;
    params.mode = kb::parse_search_mode(request.mode);
    if (request.candidates) params.candidates = *request.candidates;
    if (request.lambda) params.lambda = *request.lambda;
    if (request.nprobe) params.nprobe = *request.nprobe;
    if (request.ef_search) params.ef_search = *request.ef_search;
    params.validate();
    std::vector<Neighbour> out;
    for (const kb::Hit & hit : retriever_->search(query.data(), params)) {
        kb::Entry entry = kb_->entry(hit.id);
        Neighbour n;
        n.rank = static_cast<int64_t>(out.size());
        n.id = hit.id;
        n.text = std::move(entry.text);
        n.dataset = std::move(entry.dataset);
        n.row = entry.row;
        n.score = hit.score;
        n.similarity = hit.similarity;
        out.push_back(std::move(n));
    }
    return out;
}

KbInfo LocalRetrieval::kb_info() {
    KbInfo info;
    const nlohmann::json & identity = kb_->embedder_identity();
    for (const char * key : {"name", "type"}) {
        if (identity.is_object() && identity.contains(key) && identity[key].is_string()) {
            info.embedder = identity[key].get<std::string>();
            break;
        }
    }
    info.dim = kb_->dim();
    info.count = kb_->size();
    info.raw = {{"embedder", identity}, {"manifest", kb_->manifest()}};
    return info;
}

}  // namespace ct3::client
