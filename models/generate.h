// The generation loop: prefill the prompt, then sample one token at a time with a KV cache, streaming
// decoded text that is always valid UTF-8 and never runs past a stop string.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "models/sampler.h"
#include "models/tokenizer.h"

namespace ct3 {

struct GenerateParams {
    int max_new_tokens = 256;                // -n: at most this many new tokens (0 = return at once)
    std::vector<int32_t> eos_ids;            // empty = the model's eos_token_ids() + the tokenizer's eos_id()
    std::vector<std::string> stop_strings;   // --stop: end as soon as the generated text contains one
    bool stop_at_eos = true;                 // false = EOS ids are sampled and decoded like any other token
    SamplingParams sampling;
    // Runs the loop under c10::InferenceMode (besides NoGradGuard). Turn it off when the model lazily
    // caches tensors during forward_tokens that a later training forward would use: tensors created in
    // inference mode cannot be saved for backward.
    bool inference_mode = true;
};

struct GenerateResult {
    std::vector<int32_t> ids;    // new tokens only, without the EOS that stopped generation
    std::string text;            // decoded new tokens (special tokens skipped), cut before a stop string
    std::string finish_reason;   // "stop" (stop string), "length", "eos" or "cancelled"
    int n_prompt_tokens = 0;
    double prefill_ms = 0.0;     // prompt forward, up to the first logits row on the CPU
    double decode_ms = 0.0;      // everything after: sampling, forwards of generated tokens, decoding
};

// Called with each new piece of text and the id that produced it. `piece` may be empty while bytes
// are held back (an incomplete UTF-8 character, or text that may begin a stop string). When generation
// ends by EOS or length, the held-back text is flushed in one last call with id -1. Return false to
// cancel: generation stops with finish_reason "cancelled" and no further calls.
using TokenCallback = std::function<bool(const std::string & piece, int32_t id)>;

// Generates a continuation of `prompt_ids` (one sequence) with a fresh KV cache. Throws ct3::Error for
// an empty prompt, ids outside the vocabulary, a prompt longer than max_position_embeddings, negative
// max_new_tokens, empty stop strings or invalid sampling parameters. Stops with "length" (and a warning)
// when the context reaches max_position_embeddings.
GenerateResult generate(CausalLM & model, const Tokenizer & tokenizer, const std::vector<int32_t> & prompt_ids,
                        const GenerateParams & params, const TokenCallback & on_token = {});

// Length of the longest prefix of `text` that ends on a complete UTF-8 character: an incomplete
// multi-byte sequence at the end is excluded (invalid bytes elsewhere are left alone).
size_t utf8_complete_prefix(const std::string & text);

}  // namespace ct3
