// SentenceEmbedder: a sentence-transformers folder (Transformer -> Pooling -> optional Normalize)
// run with libtorch. Reads config.json (model_type bert | mpnet), modules.json, <pooling>/config.json
// (old pooling_mode_* booleans or the newer "pooling_mode" string: mean, cls or max),
// sentence_bert_config.json, tokenizer_config.json, model.safetensors and the tokenizer files.
// Rows are always L2-normalised (the Embedder contract), whether or not a Normalize module is listed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "models/embedder.h"
#include "models/encoder.h"
#include "models/tokenizer.h"

namespace ct3 {

enum class Pooling { mean, cls, max };

const char * pooling_name(Pooling pooling);

class SentenceEmbedder : public Embedder {
public:
    // Throws ct3::Error naming the file and field for anything missing, malformed or unsupported.
    static std::unique_ptr<SentenceEmbedder> load(const std::filesystem::path & folder,
                                                  const EmbedderOptions & options = {});

    // Tokenises (truncating to max_length()), sorts by length, runs batches of batch_size padded
    // to their longest member, pools, normalises, and returns rows in the input order.
    at::Tensor embed(const std::vector<std::string> & texts) override;
    // The same from token ids (specials included), bypassing the tokenizer.
    at::Tensor embed_ids(const std::vector<std::vector<int32_t>> & ids);
    // Last hidden state [seq, hidden] float32 CPU of one unpadded sequence (for checks and tests).
    at::Tensor hidden_states(const std::vector<int32_t> & ids);

    int64_t dim() const override { return encoder_->config().hidden_size; }
    nlohmann::json identity() const override;

    int64_t max_length() const { return max_length_; }
    Pooling pooling() const { return pooling_; }
    const Tokenizer & tokenizer() const { return *tokenizer_; }
    const EncoderConfig & config() const { return encoder_->config(); }

private:
    SentenceEmbedder() = default;
    at::Tensor embed_batch(const std::vector<const std::vector<int32_t> *> & batch);

    std::filesystem::path folder_;
    std::shared_ptr<Encoder> encoder_;
    std::unique_ptr<Tokenizer> tokenizer_;
    c10::Device device_{c10::kCPU};
    Pooling pooling_ = Pooling::mean;
    int64_t max_length_ = 512;
    int64_t batch_size_ = 32;
    int64_t pad_id_ = 0;
    bool lower_case_ = false;
    std::string weights_checksum_;
};

}  // namespace ct3
