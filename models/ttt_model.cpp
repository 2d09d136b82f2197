#include "models/ttt_model.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "models/error.h"

namespace ct3 {

namespace {

struct NamedSize {
    const char * name;
    int64_t layers, hidden, heads, intermediate;
};

// JAX model.py *-TTT configs (ttt_layers.md §2.1); 760m has head_dim 96.
const NamedSize kSizes[] = {
    {"125m", 12, 768, 12, 2048},
    {"350m", 24, 1024, 16, 2736},
    {"760m", 24, 1536, 16, 4096},
    {"1.3b", 24, 2048, 32, 5504},
};

LlamaConfig mlp_config(const TTTModelConfig & c) {
    LlamaConfig l;
    l.hidden_size = c.hidden_size;
    l.intermediate_size = c.intermediate_size;
    return l;
}

}  // namespace

std::vector<std::string> ttt_model_sizes() {
    std::vector<std::string> out;
    for (const NamedSize & s : kSizes) out.push_back(s.name);
    return out;
}

TTTModelConfig TTTModelConfig::named(const std::string & size, const std::string & ttt_layer_type,
                                     const std::string & backbone) {
    for (const NamedSize & s : kSizes) {
        if (size != s.name) continue;
        TTTModelConfig c;
        c.num_hidden_layers = s.layers;
        c.hidden_size = s.hidden;
        c.num_attention_heads = s.heads;
        c.intermediate_size = s.intermediate;
        c.ttt_layer_type = ttt_layer_type;
        c.backbone = backbone;
        c.ttt_base_lr = ttt_layer_type == "mlp" ? 0.1 : 1.0;  // the reference scripts
        c.validate();
        return c;
    }
    fail(ErrorKind::invalid_argument, "TTT model size '{}' is unknown (expected one of: {})", size,
         fmt::join(ttt_model_sizes(), ", "));
}

TTTConfig TTTModelConfig::layer_config() const {
    TTTConfig t;
    t.hidden_size = hidden_size;
    t.num_heads = num_attention_heads;
    t.mini_batch_size = mini_batch_size;
    t.ttt_base_lr = ttt_base_lr;
    t.ttt_layer_type = ttt_layer_type;
    t.use_gate = backbone == "mamba";
    t.share_qk = backbone == "mamba";
    t.conv_width = conv_width;
    t.rope_theta = rope_theta;
    t.initializer_range = initializer_range;
    return t;
}

void TTTModelConfig::validate() const {
    CT3_CHECK(vocab_size > 0 && num_hidden_layers > 0 && intermediate_size > 0, ErrorKind::invalid_argument,
              "TTT model: vocab_size, num_hidden_layers and intermediate_size must be > 0 (got {}, {}, {})", vocab_size,
              num_hidden_layers, intermediate_size);
    CT3_CHECK(backbone == "mamba" || backbone == "llama", ErrorKind::invalid_argument,
              "TTT model: backbone must be \"mamba\" or \"llama\" (got \"{}\")", backbone);
    CT3_CHECK(rms_norm_eps > 0, ErrorKind::invalid_argument, "TTT model: rms_norm_eps must be > 0 (got {})",
              rms_norm_eps);
    layer_config().validate("TTT model");
}

int64_t TTTModelConfig::parameter_count() const {
    const int64_t D = hidden_size, H = num_attention_heads, d = D / H, f = ttt_layer_type == "mlp" ? 4 * d : d;
    const bool mamba = backbone == "mamba";
    int64_t ttt = 4 * D * D;                               // Wq, Wv, Wo and Wg (mamba) or Wk (llama)
    if (mamba) ttt += 2 * (D * conv_width + D);            // conv_q, conv_k
    ttt += H * d * f + H * f;                              // W1, b1
    if (ttt_layer_type == "mlp") ttt += H * f * d + H * d;  // W2, b2
    ttt += 2 * H * d;                                      // ttt_norm weight, bias
    ttt += H * D + H;                                      // learnable lr weight, bias
    ttt += mini_batch_size;                                // learnable_token_idx
    ttt += 2 * D;                                          // post_norm
    int64_t block = ttt + 2 * D + 3 * D * intermediate_size;  // seq_norm, ffn_norm, SwiGLU
    if (mamba) block += D + D * conv_width + D;             // pre_conv_norm, pre_conv
    return num_hidden_layers * block + vocab_size * D + D;  // + tied embeddings, final norm
}

TTTBlockImpl::TTTBlockImpl(const TTTModelConfig & c) {
    if (c.backbone == "mamba") {
        pre_conv_norm = register_module("pre_conv_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
        pre_conv = register_module("pre_conv", CausalConv1d(c.hidden_size, c.conv_width));
    }
    seq_norm = register_module("seq_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    seq_modeling_block = register_module("seq_modeling_block", TTTLayer(c.layer_config()));
    ffn_norm = register_module("ffn_norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    mlp = register_module("mlp", LlamaMLP(mlp_config(c)));
    torch::NoGradGuard no_grad;
    for (auto & p : mlp->named_parameters()) p.value().normal_(0.0, c.initializer_range);
}

at::Tensor TTTBlockImpl::forward(const at::Tensor & x_in, TTTMode mode) {
    at::Tensor x = x_in;
    if (pre_conv) x = x + pre_conv->forward(pre_conv_norm->forward(x));
    x = x + seq_modeling_block->forward(seq_norm->forward(x), mode);
    return x + mlp->forward(ffn_norm->forward(x));
}

TTTForCausalLMImpl::TTTForCausalLMImpl(TTTModelConfig config) : config_(std::move(config)) {
    config_.validate();
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(config_.vocab_size, config_.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i) layers->push_back(TTTBlock(config_));
    norm = register_module("norm", RMSNorm(config_.hidden_size, config_.rms_norm_eps));
    torch::NoGradGuard no_grad;
    embed_tokens->weight.normal_(0.0, config_.initializer_range);
}

at::Tensor TTTForCausalLMImpl::forward(const at::Tensor & input_ids, TTTMode mode) {
    CT3_CHECK(input_ids.defined() && input_ids.dim() == 2 && input_ids.size(1) > 0, ErrorKind::invalid_argument,
              "TTTForCausalLM: input_ids must be [batch, seq] with seq > 0");
    at::Tensor h = embed_tokens->forward(input_ids);
    for (size_t i = 0; i < layers->size(); ++i) h = layers->ptr<TTTBlockImpl>(i)->forward(h, mode);
    h = norm->forward(h);
    // Tied head: logits against the embedding matrix, in float32 for the loss.
    return torch::nn::functional::linear(h, embed_tokens->weight).to(torch::kFloat32);
}

}  // namespace ct3
