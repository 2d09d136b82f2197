#include "server/text_embedder.h"

#include "kb/knowledge_base.h"
#include "models/embedder.h"
#include "models/error.h"

namespace ct3::server {

EmbedFn make_kb_embed_fn(kb::KnowledgeBase & kb) {
    Embedder & embedder = kb.embedder();
    const int64_t dim = kb.dim();
    CT3_CHECK(embedder.dim() == dim, ErrorKind::bad_format,
              "the knowledge base's embedder has dimension {} but its index has {}", embedder.dim(), dim);
    return [&embedder, dim](const std::vector<std::string> & texts) {
        at::Tensor out = embedder.embed(texts).to(at::kCPU, at::kFloat).contiguous();
        CT3_ASSERT(out.dim() == 2 && out.size(0) == int64_t(texts.size()) && out.size(1) == dim);
        const float * p = out.data_ptr<float>();
        return std::vector<float>(p, p + out.numel());
    };
}

}  // namespace ct3::server
