// Bits per byte of a document under a causal LM: the metric of Hardt & Sun (2023) and SIFT for
// test-time training (lower is better; compare before and after TTT on the same text).
//   bpb = (sum over scored tokens of -ln p(token | previous tokens)) / ln 2 / (UTF-8 bytes of the text)
// The first token (BOS, when the tokenizer adds one) is context only; every other token is scored
// exactly once. Documents longer than the window are scored in windows that overlap by one token,
// so each window's first token is the previous window's last (context resets at a window start).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ct3 {
class CausalLM;
class Tokenizer;
}  // namespace ct3

namespace ct3::eval {

struct BpbResult {
    double nll_nats = 0;   // summed over scored tokens
    int64_t tokens = 0;    // scored tokens
    int64_t bytes = 0;     // UTF-8 bytes of the text
    double bits_per_byte() const;
    double bits_per_token() const;
};

// Scores `ids` (at least 2) in windows of `window` tokens (0 = the model's max_position_embeddings).
BpbResult score_ids(CausalLM & model, const std::vector<int32_t> & ids, int64_t bytes, int64_t window = 0);

// Tokenizes `text` with the tokenizer's special tokens (BOS) and scores it.
BpbResult bits_per_byte(CausalLM & model, const Tokenizer & tokenizer, const std::string & text, int64_t window = 0);

}  // namespace ct3::eval
