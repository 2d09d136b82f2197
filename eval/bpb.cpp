#include "eval/bpb.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "models/causal_lm.h"
#include "models/error.h"
#include "models/tokenizer.h"

namespace ct3::eval {

double BpbResult::bits_per_byte() const {
    return bytes > 0 ? nll_nats / std::log(2.0) / static_cast<double>(bytes) : 0.0;
}

double BpbResult::bits_per_token() const {
    return tokens > 0 ? nll_nats / std::log(2.0) / static_cast<double>(tokens) : 0.0;
}

BpbResult score_ids(CausalLM & model, const std::vector<int32_t> & ids, int64_t bytes, int64_t window) {
    CT3_CHECK(ids.size() >= 2, ErrorKind::invalid_argument, "bits per byte needs at least 2 tokens (got {})",
              ids.size());
    if (window <= 0) window = model.max_position_embeddings();
    CT3_CHECK(window >= 2, ErrorKind::invalid_argument, "the scoring window must hold at least 2 tokens (got {})",
              window);
    c10::InferenceMode inference;
    BpbResult result;
    result.bytes = bytes;
    const int64_t n = static_cast<int64_t>(ids.size());
    for (int64_t start = 0; start + 1 < n; start += window - 1) {
        const int64_t end = std::min(n, start + window);
        std::vector<int64_t> chunk(ids.begin() + start, ids.begin() + end);
        at::Tensor input = torch::tensor(chunk, torch::kInt64).view({1, -1});
        at::Tensor logits = model.forward_tokens(input, nullptr)[0];  // [T, V] float32
        at::Tensor log_probs = torch::log_softmax(logits.slice(0, 0, end - start - 1).to(torch::kFloat64), -1);
        at::Tensor targets = input[0].slice(0, 1).to(log_probs.device()).unsqueeze(1);
        result.nll_nats -= log_probs.gather(1, targets).sum().item<double>();
        result.tokens += end - start - 1;
    }
    return result;
}

BpbResult bits_per_byte(CausalLM & model, const Tokenizer & tokenizer, const std::string & text, int64_t window) {
    EncodeOptions options;
    options.add_special_tokens = true;
    std::vector<int32_t> ids = tokenizer.encode(text, options);
    return score_ids(model, ids, static_cast<int64_t>(text.size()), window);
}

}  // namespace ct3::eval
