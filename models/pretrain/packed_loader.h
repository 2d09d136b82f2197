// Packed-sequence data loader over token shards: the shards' concatenated token stream is cut into
// non-overlapping windows of seq_len + 1 tokens at stride seq_len (window w = tokens
// [w*seq_len, w*seq_len + seq_len + 1)), so inputs = window[:-1] and targets = window[1:] come from
// one window and consecutive windows share one boundary token. A trailing partial window is never
// used. Documents are packed as they lie in the stream ([BOS] doc [EOS] [BOS] doc ...).
//
// Order: epoch e visits every window exactly once, in a permutation drawn by Fisher-Yates from
// std::mt19937_64(seed + e) (own bounded draw, so the order is the same with every standard
// library). The order of an epoch is independent of how many batches were drawn before it.
// Batches are consecutive slices of the endless stream "epoch 0 order, epoch 1 order, ...", so a
// batch at the end of an epoch continues with the first windows of the next; no window is dropped.
//
// Data parallel: with W = world_size, a global batch is batch_size * W consecutive windows of that
// stream and rank r takes rows r, r + W, r + 2W, ... of it (batch_size rows). So the union of all
// ranks' batches is exactly the batch of a single process with batch_size * W (tested), and every
// rank advances the same global state.
//
// Resume: state() = {epoch, position in that epoch's order} of the next global batch; it is the
// same on every rank. restore(state) continues exactly where state() was taken.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include "models/pretrain/token_shards.h"

namespace ct3::pretrain {

struct LoaderState {
    int64_t epoch = 0;
    int64_t position = 0;  // windows of this epoch's order already consumed

    nlohmann::json to_json() const;
    // Throws ct3::Error (bad_format) naming the field when it is missing or not a non-negative integer.
    static LoaderState from_json(const nlohmann::json & j);
    bool operator==(const LoaderState & o) const { return epoch == o.epoch && position == o.position; }
    bool operator!=(const LoaderState & o) const { return !(*this == o); }
};

class PackedLoader {
public:
    // Throws ct3::Error naming the parameter (seq_len, batch_size, rank, world_size) when invalid,
    // or the shard when it cannot be read or the shards disagree on the vocab size, and when the
    // shards hold fewer than seq_len + 1 tokens.
    PackedLoader(const std::vector<std::filesystem::path> & shards, int64_t seq_len, int64_t batch_size,
                 uint64_t seed, int rank = 0, int world_size = 1);

    // The next batch of this rank: int64 CPU tensor [batch_size, seq_len + 1].
    at::Tensor next();

    LoaderState state() const { return state_; }
    // Throws ct3::Error when the state does not fit these shards (position >= num_windows()).
    void restore(const LoaderState & state);

    // Evaluation: every window once, in stream order, ignoring rank and the random order.
    // Batch i holds windows [i*batch_size, min((i+1)*batch_size, num_windows())): the last may be short.
    int64_t num_sequential_batches() const { return (num_windows_ + batch_size_ - 1) / batch_size_; }
    at::Tensor sequential_batch(int64_t i) const;

    // Windows [first, first + count) in stream order: [count, seq_len + 1].
    at::Tensor windows(int64_t first, int64_t count) const;
    // The visiting order of an epoch (window indices), as next() uses it.
    std::vector<int64_t> epoch_order(int64_t epoch) const;

    int64_t num_windows() const { return num_windows_; }
    int64_t num_tokens() const { return num_tokens_; }
    int64_t seq_len() const { return seq_len_; }
    int64_t batch_size() const { return batch_size_; }
    uint32_t vocab_size() const { return vocab_size_; }

private:
    void copy_window(int64_t window, int64_t * out) const;
    const std::vector<int64_t> & order(int64_t epoch);

    std::vector<std::unique_ptr<TokenShard>> shards_;
    std::vector<int64_t> shard_start_;  // stream offset of each shard's first token
    int64_t seq_len_, batch_size_;
    uint64_t seed_;
    int rank_, world_size_;
    int64_t num_tokens_ = 0, num_windows_ = 0;
    uint32_t vocab_size_ = 0;
    LoaderState state_;
    int64_t cached_epoch_ = -1;
    std::vector<int64_t> cached_order_;
};

}  // namespace ct3::pretrain
