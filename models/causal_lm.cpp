#include "models/causal_lm.h"

#include <torch/torch.h>

#include "models/error.h"

namespace ct3 {

void check_input_ids(const at::Tensor & ids, int64_t vocab_size, const char * who) {
    CT3_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0, ErrorKind::invalid_argument,
              "{}input_ids must be a non-empty [batch, seq] tensor (got {})", who,
              ids.defined() ? fmt::format("shape [{}]", fmt::join(ids.sizes(), ", ")) : "undefined");
    CT3_CHECK(ids.scalar_type() == torch::kInt64 || ids.scalar_type() == torch::kInt32, ErrorKind::invalid_argument,
              "{}input_ids must be int64 or int32 (got {})", who, c10::toString(ids.scalar_type()));
    if (!ids.device().is_cpu()) return;
    at::Tensor bounds = torch::stack({ids.min(), ids.max()}).to(torch::kInt64);
    const int64_t lo = bounds[0].item<int64_t>(), hi = bounds[1].item<int64_t>();
    CT3_CHECK(lo >= 0 && hi < vocab_size, ErrorKind::invalid_argument,
              "input_ids contain token ids in [{}, {}] outside the vocabulary [0, {})", lo, hi, vocab_size);
}

}  // namespace ct3
