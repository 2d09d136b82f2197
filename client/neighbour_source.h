// Where the TTT engine gets its query embeddings and neighbours: a ct3-server over HTTP
// (RetrievalClient, the original's remote mode) or a KB folder opened in this process
// (LocalRetrieval, the original's in-process mode used by its eval scripts).
#pragma once

#include <string>
#include <vector>

#include "client/retrieval_types.h"

namespace ct3::client {

class NeighbourSource {
public:
    virtual ~NeighbourSource() = default;
    // The unit embedding of `text` under the KB's embedder.
    virtual std::vector<float> embed(const std::string & text) = 0;
    virtual std::vector<Neighbour> search(const SearchRequest & request) = 0;
    virtual KbInfo kb_info() = 0;
    // "http://127.0.0.1:8000" or "KB folder /path", for messages.
    virtual std::string describe() const = 0;
};

}  // namespace ct3::client
