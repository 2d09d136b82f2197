#include "models/pretrain/packed_loader.h"

#include <algorithm>
#include <random>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::pretrain {

nlohmann::json LoaderState::to_json() const { return {{"epoch", epoch}, {"position", position}}; }

LoaderState LoaderState::from_json(const nlohmann::json & j) {
    auto field = [&](const char * key) {
        CT3_CHECK(j.is_object() && j.contains(key) && j[key].is_number_integer() && j[key].get<int64_t>() >= 0,
                  ErrorKind::bad_format, "loader state: field \"{}\" must be a non-negative integer (got {})", key,
                  j.is_object() && j.contains(key) ? j[key].dump() : std::string("nothing"));
        return j[key].get<int64_t>();
    };
    LoaderState s;
    s.epoch = field("epoch");
    s.position = field("position");
    return s;
}

namespace {

// Uniform in [0, n): rejection of the low remainder (as PCG's bounded rand), so no modulo bias and
// no dependence on the standard library's distributions.
uint64_t bounded(std::mt19937_64 & rng, uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
        const uint64_t x = rng();
        if (x >= threshold) return x % n;
    }
}

}  // namespace

PackedLoader::PackedLoader(const std::vector<fs::path> & shards, int64_t seq_len, int64_t batch_size, uint64_t seed,
                           int rank, int world_size)
    : seq_len_(seq_len), batch_size_(batch_size), seed_(seed), rank_(rank), world_size_(world_size) {
    CT3_CHECK(!shards.empty(), ErrorKind::invalid_argument, "packed loader: no token shards given");
    CT3_CHECK(seq_len > 0, ErrorKind::invalid_argument, "packed loader: seq_len {} (expected > 0)", seq_len);
    CT3_CHECK(batch_size > 0, ErrorKind::invalid_argument, "packed loader: batch_size {} (expected > 0)", batch_size);
    CT3_CHECK(world_size > 0 && rank >= 0 && rank < world_size, ErrorKind::invalid_argument,
              "packed loader: rank {} of world_size {} (expected 0 <= rank < world_size)", rank, world_size);
    for (const fs::path & p : shards) {
        auto shard = std::make_unique<TokenShard>(p);
        if (shards_.empty()) vocab_size_ = shard->vocab_size();
        CT3_CHECK(shard->vocab_size() == vocab_size_, ErrorKind::bad_format,
                  "packed loader: token shard '{}' has vocab size {} but '{}' has {} (shards of different tokenizers?)",
                  p.string(), shard->vocab_size(), shards_.front()->path().string(), vocab_size_);
        shard_start_.push_back(num_tokens_);
        num_tokens_ += static_cast<int64_t>(shard->size());
        shards_.push_back(std::move(shard));
    }
    CT3_CHECK(num_tokens_ >= seq_len + 1, ErrorKind::invalid_argument,
              "packed loader: the shards ({} first) hold {} tokens, fewer than one window of seq_len + 1 = {}",
              shards.front().string(), num_tokens_, seq_len + 1);
    num_windows_ = (num_tokens_ - 1) / seq_len;
}

void PackedLoader::copy_window(int64_t window, int64_t * out) const {
    int64_t pos = window * seq_len_;
    int64_t left = seq_len_ + 1;
    // The shard holding `pos`: the last one starting at or before it.
    size_t s = static_cast<size_t>(std::upper_bound(shard_start_.begin(), shard_start_.end(), pos) -
                                   shard_start_.begin()) - 1;
    while (left > 0) {
        CT3_ASSERT(s < shards_.size());
        const int64_t offset = pos - shard_start_[s];
        const int64_t n = std::min<int64_t>(left, static_cast<int64_t>(shards_[s]->size()) - offset);
        if (n > 0) {
            shards_[s]->copy_to(static_cast<uint64_t>(offset), static_cast<uint64_t>(n), out);
            out += n;
            pos += n;
            left -= n;
        }
        ++s;  // the window continues in the next shard (empty shards are skipped)
    }
}

std::vector<int64_t> PackedLoader::epoch_order(int64_t epoch) const {
    std::vector<int64_t> order(static_cast<size_t>(num_windows_));
    for (int64_t i = 0; i < num_windows_; ++i) order[i] = i;
    std::mt19937_64 rng(seed_ + static_cast<uint64_t>(epoch));
    for (int64_t i = num_windows_ - 1; i > 0; --i) {
        std::swap(order[i], order[bounded(rng, static_cast<uint64_t>(i) + 1)]);
    }
    return order;
}

const std::vector<int64_t> & PackedLoader::order(int64_t epoch) {
    if (epoch != cached_epoch_) {
        cached_order_ = epoch_order(epoch);
        cached_epoch_ = epoch;
    }
    return cached_order_;
}

at::Tensor PackedLoader::next() {
    at::Tensor batch = at::empty({batch_size_, seq_len_ + 1}, at::TensorOptions().dtype(at::kLong));
    int64_t * out = batch.data_ptr<int64_t>();
    for (int64_t j = 0; j < batch_size_; ++j) {
        // Row j of this rank is row rank + j*W of the global batch.
        const int64_t p = state_.position + rank_ + j * world_size_;
        const int64_t epoch = state_.epoch + p / num_windows_;
        copy_window(order(epoch)[static_cast<size_t>(p % num_windows_)], out + j * (seq_len_ + 1));
    }
    const int64_t advanced = state_.position + batch_size_ * world_size_;
    state_.epoch += advanced / num_windows_;
    state_.position = advanced % num_windows_;
    return batch;
}

void PackedLoader::restore(const LoaderState & state) {
    CT3_CHECK(state.epoch >= 0 && state.position >= 0 && state.position < num_windows_, ErrorKind::invalid_argument,
              "packed loader: cannot restore epoch {} position {}: these shards have {} windows of {} tokens "
              "(a checkpoint of other data or another seq_len?)",
              state.epoch, state.position, num_windows_, seq_len_ + 1);
    state_ = state;
}

at::Tensor PackedLoader::windows(int64_t first, int64_t count) const {
    CT3_CHECK(first >= 0 && count >= 0 && first + count <= num_windows_, ErrorKind::invalid_argument,
              "packed loader: windows [{}, {}) are outside [0, {})", first, first + count, num_windows_);
    at::Tensor batch = at::empty({count, seq_len_ + 1}, at::TensorOptions().dtype(at::kLong));
    int64_t * out = batch.data_ptr<int64_t>();
    for (int64_t i = 0; i < count; ++i) copy_window(first + i, out + i * (seq_len_ + 1));
    return batch;
}

at::Tensor PackedLoader::sequential_batch(int64_t i) const {
    CT3_CHECK(i >= 0 && i < num_sequential_batches(), ErrorKind::invalid_argument,
              "packed loader: sequential batch {} is outside [0, {})", i, num_sequential_batches());
    const int64_t first = i * batch_size_;
    return windows(first, std::min(batch_size_, num_windows_ - first));
}

}  // namespace ct3::pretrain
