#include "models/pretrain/pretrain_model.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/llama.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/trainer.h"
#include "models/ttt_loader.h"

namespace ct3::pretrain {

nlohmann::json PretrainModelConfig::config_json(const std::string & dtype) const {
    return ttt ? ttt_config_to_json(*ttt, dtype) : hf_config_json(llama, dtype);
}

PretrainModelConfig PretrainModelConfig::from_json(const nlohmann::json & j, const std::string & source) {
    if (j.is_object() && j.contains("model_type") && j.at("model_type") == "ttt") {
        return PretrainModelConfig(ttt_config_from_json(j, source));
    }
    return PretrainModelConfig(LlamaConfig::from_json(j, source));
}

int64_t PretrainModelConfig::vocab_size() const {
    return ttt ? ttt->vocab_size : llama.vocab_size;
}

int64_t PretrainModelConfig::max_position_embeddings() const {
    return ttt ? ttt->max_position_embeddings : llama.max_position_embeddings;
}

int32_t PretrainModelConfig::bos_token_id() const {
    return ttt ? ttt->bos_token_id : llama.bos_token_id;
}

const std::vector<int32_t> & PretrainModelConfig::eos_token_ids() const {
    return ttt ? ttt->eos_token_ids : llama.eos_token_ids;
}

void PretrainModelConfig::validate(const std::string & source) const {
    if (ttt) {
        ttt->validate(source);
    } else {
        llama.validate(source);
    }
}

std::string PretrainModelConfig::describe() const {
    if (!ttt) return "transformer";
    std::string ablation;  // only the switches that differ from the reference layer
    if (!ttt->inner_norm) ablation += ", no inner LN/residual";
    if (!ttt->learnable_lr) ablation += ", fixed lr";
    if (!ttt->learnable_w0) ablation += ", W0 = 0";
    return "ttt-" + ttt->ttt_layer_type + " (" + ttt->backbone + " backbone, mini-batch " +
           std::to_string(ttt->mini_batch_size) + ablation + ")";
}

PretrainModelConfig pretrain_model_config(const LlamaConfig & sizes, const std::string & backbone,
                                          const std::string & style, const TTTLayerOptions & ttt) {
    CT3_CHECK(backbone == "transformer" || backbone == "ttt-linear" || backbone == "ttt-mlp",
              ErrorKind::invalid_argument, "--backbone must be transformer, ttt-linear or ttt-mlp (got '{}')",
              backbone);
    CT3_CHECK(style == "mamba" || style == "llama", ErrorKind::invalid_argument,
              "--backbone_style must be mamba or llama (got '{}')", style);
    if (backbone == "transformer") {
        CT3_CHECK(ttt.is_default(), ErrorKind::invalid_argument,
                  "--ttt_mini_batch, --ttt_base_lr, --ttt_inner_norm, --ttt_learnable_lr and --ttt_learnable_w0 apply "
                  "to --backbone ttt-linear or ttt-mlp only (got --backbone transformer)");
        return PretrainModelConfig(sizes);
    }
    TTTModelConfig c;
    c.vocab_size = sizes.vocab_size;
    c.hidden_size = sizes.hidden_size;
    c.num_hidden_layers = sizes.num_hidden_layers;
    c.num_attention_heads = sizes.num_attention_heads;
    c.intermediate_size = sizes.intermediate_size;
    c.ttt_layer_type = backbone == "ttt-mlp" ? "mlp" : "linear";
    c.backbone = style;
    c.ttt_base_lr = ttt.base_lr > 0 ? ttt.base_lr : TTTModelConfig::reference_base_lr(c.ttt_layer_type);
    c.mini_batch_size = ttt.mini_batch_size;
    c.inner_norm = ttt.inner_norm;
    c.learnable_lr = ttt.learnable_lr;
    c.learnable_w0 = ttt.learnable_w0;
    c.max_position_embeddings = sizes.max_position_embeddings;
    c.tie_word_embeddings = sizes.tie_word_embeddings;
    c.bos_token_id = sizes.bos_token_id;
    c.eos_token_ids = sizes.eos_token_ids;
    c.validate("--backbone " + backbone);
    return PretrainModelConfig(c);
}

PretrainModel build_pretrain_model(const PretrainModelConfig & config) {
    PretrainModel out;
    if (config.ttt) {
        TTTForCausalLM model(*config.ttt);
        out.module = model.ptr();
        out.lm = model.ptr();
    } else {
        LlamaForCausalLM model(config.llama, /*init_weights=*/true);
        out.module = model.ptr();
        out.lm = model.ptr();
    }
    return out;
}

double model_flops_per_token(const PretrainModelConfig & config, int64_t seq_len) {
    if (!config.ttt) return flops_per_token(config.llama, seq_len);
    const TTTModelConfig & c = *config.ttt;
    const double D = static_cast<double>(c.hidden_size), H = static_cast<double>(c.num_attention_heads);
    const double d = D / H, f = c.ttt_layer_type == "mlp" ? 4 * d : d, b = static_cast<double>(c.mini_batch_size);
    const double inner_layers = c.ttt_layer_type == "mlp" ? 2.0 : 1.0;
    // Per layer and token: Wq, Wv, Wo and Wg or Wk, the SwiGLU; the inner loop's dual form per head
    // (gradients at W0, Q·W0, the b×b attention-like terms, the end-of-mini-batch update), forward only,
    // then ×3 with the backward like the matmuls.
    const double matmul = 4 * D * D + 3 * D * static_cast<double>(c.intermediate_size);
    const double inner = inner_layers * H * 2 * (3 * d * f + 2 * b * (d + f));
    const double per_token =
        6 * (c.num_hidden_layers * matmul + D * static_cast<double>(c.vocab_size)) + 3 * c.num_hidden_layers * inner;
    (void)seq_len;  // the recurrence costs the same per token at every context length
    return per_token;
}

}  // namespace ct3::pretrain
