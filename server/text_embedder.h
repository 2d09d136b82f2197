// The one place where the server touches libtorch: an EmbedFn over the KB's own embedder.
// Kept apart so that api*.cpp compile without torch headers (and the fuzzer links without libtorch).
#pragma once

#include "server/api.h"

namespace ct3::server {

// Embeds with kb.embedder() (throws ct3::Error unavailable when the KB was opened without one).
// Not thread-safe, like the embedder: Api calls it under its embed mutex.
EmbedFn make_kb_embed_fn(kb::KnowledgeBase & kb);

}  // namespace ct3::server
