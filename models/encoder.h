// Shared pieces of the bidirectional text encoders (BERT family, MPNet): the config, the Encoder
// base class, activations, the additive padding mask and weight loading by Hugging Face names.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

namespace ct3 {

enum class Activation { gelu, gelu_tanh, relu, silu };

// The fields of a Hugging Face config.json that the encoders use.
struct EncoderConfig {
    std::string model_type;  // "bert" or "mpnet"
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t intermediate_size = 0;
    Activation hidden_act = Activation::gelu;
    double layer_norm_eps = 1e-12;
    int64_t max_position_embeddings = 512;
    int64_t type_vocab_size = 2;                // BERT only
    int64_t pad_token_id = 0;
    int64_t relative_attention_num_buckets = 32;  // MPNet only

    // Parses and validates config.json content; `where` (the file) is named in every error.
    static EncoderConfig from_json(const nlohmann::json & config, const std::string & where);
    // The longest input (special tokens included) the position table allows.
    int64_t max_tokens() const;
};

// The model types make_encoder() accepts, for error messages.
const std::vector<std::string> & supported_encoder_types();

Activation activation_from_string(const std::string & name, const std::string & where);
at::Tensor apply_activation(const at::Tensor & x, Activation act);

// attention_mask [batch, seq] (1 = token, 0 = pad) -> additive bias [batch, 1, 1, seq] of `dtype`:
// 0 for tokens, the dtype's lowest finite value for padding (as transformers does).
at::Tensor padding_bias(const at::Tensor & attention_mask, c10::ScalarType dtype);

// A bidirectional encoder; parameters are registered under the exact Hugging Face names.
class Encoder : public torch::nn::Module {
public:
    explicit Encoder(EncoderConfig config) : config_(std::move(config)) {}
    // input_ids, attention_mask: [batch, seq] int64 on the module's device -> last hidden state
    // [batch, seq, hidden] float32. Throws ct3::Error for out-of-vocabulary ids or overlong input.
    virtual at::Tensor forward(const at::Tensor & input_ids, const at::Tensor & attention_mask) = 0;
    const EncoderConfig & config() const { return config_; }

protected:
    void check_inputs(const at::Tensor & input_ids, const at::Tensor & attention_mask) const;
    EncoderConfig config_;
};

// BertModel for "bert",
// MPNetModel for "mpnet"; throws unsupported naming the type and the supported ones otherwise.
std::shared_ptr<Encoder> make_encoder(const EncoderConfig & config);

// Copies `tensors` into the module's parameters. Checkpoint names may carry one of `prefixes`
// ("bert.", "mpnet.", ...), which is stripped; names matching `ignored` prefixes (pooler.*,
// embeddings.position_ids, lm_head.*) are skipped; other unknown names are logged. Every missing
// parameter or shape mismatch throws ct3::Error naming `where` and the tensor. Values are cast to
// the parameter's dtype and device.
void load_encoder_weights(torch::nn::Module & module, const std::map<std::string, at::Tensor> & tensors,
                          const std::string & where, const std::vector<std::string> & prefixes,
                          const std::vector<std::string> & ignored);

// An empty module used to build the Hugging Face name hierarchy ("encoder.layer.0.attention...").
struct ModuleGroup : torch::nn::Module {};

}  // namespace ct3
