// The interface every decoder LM offers to generation, TTT and evaluation.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace ct3 {

// The state of a recurrent model (e.g. the TTT layers' inner weights) after the tokens seen so far.
// Each recurrent model defines its own subclass; KVCache only needs its length and a way to reset it.
struct RecurrentCache {
    virtual ~RecurrentCache() = default;
    virtual int64_t length() const = 0;  // tokens consumed so far
    virtual void clear() = 0;            // back to "no tokens seen"
};

// Keys and values of the tokens seen so far, per layer: [batch, n_kv_heads, length, head_dim].
// Empty tensors before the first forward. Owned by the caller of generate(); one per sequence batch.
// A recurrent model keeps its state in `recurrent` instead (keys/values stay empty); copies of a
// KVCache share that state object.
struct KVCache {
    std::vector<at::Tensor> keys;
    std::vector<at::Tensor> values;
    std::shared_ptr<RecurrentCache> recurrent;

    int64_t length() const {
        if (recurrent) return recurrent->length();
        return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2);
    }
    void clear() {
        for (auto & k : keys) k = at::Tensor();
        for (auto & v : values) v = at::Tensor();
        if (recurrent) recurrent->clear();
    }
};

// Output of a training forward.
struct LMOutput {
    at::Tensor logits;  // [batch, seq, vocab], float32
    at::Tensor loss;    // scalar mean cross-entropy over shifted labels != -100 (undefined without labels)
};

// Checks input_ids for any CausalLM: a non-empty [batch, seq] int64/int32 tensor whose ids lie in
// [0, vocab_size). Ids from the host (prompts, sampled tokens) are range-checked here for free; ids
// already on an accelerator come from the model's own argmax/sampling there, and checking them would
// force a device sync per generated token, so they are trusted. `who` prefixes the shape/dtype
// messages ("" or "TTTForCausalLM: "). Throws invalid_argument.
void check_input_ids(const at::Tensor & ids, int64_t vocab_size, const char * who = "");

class CausalLM {
public:
    virtual ~CausalLM() = default;

    // Incremental forward: input_ids [batch, seq] int64 appended after the cache's tokens
    // (positions start at cache->length()). Returns float32 logits [batch, seq, vocab].
    // A null cache runs a plain causal forward from position 0.
    virtual at::Tensor forward_tokens(const at::Tensor & input_ids, KVCache * cache) = 0;

    // Full-sequence forward for training/scoring. attention_mask [batch, seq] (1 = token, 0 = pad,
    // right padding) and labels [batch, seq] (-100 = ignored) are optional (undefined tensors).
    // The loss is the Hugging Face causal-LM loss: logits[:, :-1] predict labels[:, 1:].
    virtual LMOutput forward_train(const at::Tensor & input_ids, const at::Tensor & attention_mask,
                                   const at::Tensor & labels) = 0;

    virtual KVCache make_cache() const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual int64_t max_position_embeddings() const = 0;
    virtual std::vector<int32_t> eos_token_ids() const = 0;
    virtual int32_t bos_token_id() const = 0;  // -1 when none
    virtual c10::Device device() const = 0;
};

}  // namespace ct3
