#include "models/encoder.h"

#include <limits>
#include <set>

#include "models/bert.h"
#include <fmt/ranges.h>  // fmt::join

#include "models/error.h"
#include "models/log.h"
#include "models/mpnet.h"

namespace ct3 {

namespace {

int64_t get_int(const nlohmann::json & j, const char * key, const std::string & where, int64_t fallback, bool required,
                int64_t lo, int64_t hi) {
    if (!j.contains(key) || j[key].is_null()) {
        CT3_CHECK(!required, ErrorKind::bad_format, "{}: required field '{}' is missing", where, key);
        return fallback;
    }
    CT3_CHECK(j[key].is_number_integer(), ErrorKind::bad_format, "{}: field '{}' must be an integer (got {})", where,
              key, j[key].dump());
    int64_t v = j[key].get<int64_t>();
    CT3_CHECK(v >= lo && v <= hi, ErrorKind::bad_format, "{}: field '{}' = {} out of range (expected {}..{})", where,
              key, v, lo, hi);
    return v;
}

}  // namespace

const std::vector<std::string> & supported_encoder_types() {
    static const std::vector<std::string> types = {"bert", "mpnet"};
    return types;
}

Activation activation_from_string(const std::string & name, const std::string & where) {
    if (name == "gelu") return Activation::gelu;  // transformers' "gelu" is the exact erf form
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
    if (name == "relu") return Activation::relu;
    if (name == "silu" || name == "swish") return Activation::silu;
    fail(ErrorKind::unsupported, "{}: hidden_act '{}' is not supported (expected gelu, gelu_new, gelu_pytorch_tanh, "
         "relu or silu)", where, name);
}

at::Tensor apply_activation(const at::Tensor & x, Activation act) {
    switch (act) {
        case Activation::gelu: return torch::gelu(x);
        case Activation::gelu_tanh: return torch::gelu(x, "tanh");
        case Activation::relu: return torch::relu(x);
        case Activation::silu: return torch::silu(x);
    }
    CT3_ASSERT(false);
}

EncoderConfig EncoderConfig::from_json(const nlohmann::json & j, const std::string & where) {
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "{}: expected a JSON object", where);
    EncoderConfig c;
    CT3_CHECK(j.contains("model_type") && j["model_type"].is_string(), ErrorKind::bad_format,
              "{}: field 'model_type' (string) is missing", where);
    c.model_type = j["model_type"].get<std::string>();
    bool known = false;
    for (const auto & t : supported_encoder_types()) known = known || t == c.model_type;
    CT3_CHECK(known, ErrorKind::unsupported, "{}: model_type '{}' is not supported (supported: {})", where,
              c.model_type, fmt::join(supported_encoder_types(), ", "));
    const int64_t big = int64_t(1) << 24;
    c.vocab_size = get_int(j, "vocab_size", where, 0, true, 1, int64_t(1) << 22);
    c.hidden_size = get_int(j, "hidden_size", where, 0, true, 1, 65536);
    c.num_hidden_layers = get_int(j, "num_hidden_layers", where, 0, true, 0, 1024);
    c.num_attention_heads = get_int(j, "num_attention_heads", where, 0, true, 1, 4096);
    c.intermediate_size = get_int(j, "intermediate_size", where, 0, true, 1, big);
    c.max_position_embeddings = get_int(j, "max_position_embeddings", where, 512, false, 1, big);
    c.type_vocab_size = get_int(j, "type_vocab_size", where, c.model_type == "bert" ? 2 : 0, false, 0, 1024);
    c.pad_token_id = get_int(j, "pad_token_id", where, c.model_type == "mpnet" ? 1 : 0, false, 0, c.vocab_size - 1);
    c.relative_attention_num_buckets = get_int(j, "relative_attention_num_buckets", where, 32, false, 2, 4096);
    CT3_CHECK(c.hidden_size % c.num_attention_heads == 0, ErrorKind::bad_format,
              "{}: hidden_size {} is not a multiple of num_attention_heads {}", where, c.hidden_size,
              c.num_attention_heads);
    if (j.contains("hidden_act")) {
        CT3_CHECK(j["hidden_act"].is_string(), ErrorKind::bad_format, "{}: 'hidden_act' must be a string", where);
        c.hidden_act = activation_from_string(j["hidden_act"].get<std::string>(), where);
    }
    if (j.contains("layer_norm_eps")) {
        CT3_CHECK(j["layer_norm_eps"].is_number(), ErrorKind::bad_format, "{}: 'layer_norm_eps' must be a number",
                  where);
        c.layer_norm_eps = j["layer_norm_eps"].get<double>();
        CT3_CHECK(c.layer_norm_eps > 0 && c.layer_norm_eps < 1, ErrorKind::bad_format,
                  "{}: layer_norm_eps {} out of range (0, 1)", where, c.layer_norm_eps);
    }
    if (c.model_type == "bert" && j.contains("position_embedding_type") && !j["position_embedding_type"].is_null()) {
        CT3_CHECK(j["position_embedding_type"] == "absolute", ErrorKind::unsupported,
                  "{}: position_embedding_type {} is not supported (only \"absolute\")", where,
                  j["position_embedding_type"].dump());
    }
    if (c.model_type == "mpnet") {
        // Positions start at pad_token_id + 1, so the table must hold at least one real position.
        CT3_CHECK(c.max_position_embeddings > c.pad_token_id + 1, ErrorKind::bad_format,
                  "{}: max_position_embeddings {} leaves no positions after padding_idx {}", where,
                  c.max_position_embeddings, c.pad_token_id);
    }
    return c;
}

int64_t EncoderConfig::max_tokens() const {
    return model_type == "mpnet" ? max_position_embeddings - pad_token_id - 1 : max_position_embeddings;
}

at::Tensor padding_bias(const at::Tensor & attention_mask, c10::ScalarType dtype) {
    at::Tensor keep = attention_mask.to(dtype).unsqueeze(1).unsqueeze(2);
    double lowest = dtype == torch::kFloat64 ? std::numeric_limits<double>::lowest()
                    : dtype == torch::kFloat16 ? -65504.0
                    : dtype == torch::kBFloat16 ? -3.3895313892515355e38
                                                : double(std::numeric_limits<float>::lowest());
    return (1.0 - keep) * lowest;
}

void Encoder::check_inputs(const at::Tensor & input_ids, const at::Tensor & attention_mask) const {
    CT3_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == torch::kInt64, ErrorKind::invalid_argument,
              "{} encoder: input_ids must be [batch, seq] int64 (got {} {})", config_.model_type,
              c10::str(input_ids.sizes()), c10::toString(input_ids.scalar_type()));
    CT3_CHECK(attention_mask.sizes() == input_ids.sizes(), ErrorKind::invalid_argument,
              "{} encoder: attention_mask shape {} differs from input_ids shape {}", config_.model_type,
              c10::str(attention_mask.sizes()), c10::str(input_ids.sizes()));
    CT3_CHECK(input_ids.size(1) <= config_.max_tokens(), ErrorKind::invalid_argument,
              "{} encoder: sequence of {} tokens exceeds the model's maximum of {}", config_.model_type,
              input_ids.size(1), config_.max_tokens());
    if (input_ids.numel() > 0) {
        int64_t lo = input_ids.min().item<int64_t>();
        int64_t hi = input_ids.max().item<int64_t>();
        CT3_CHECK(lo >= 0 && hi < config_.vocab_size, ErrorKind::invalid_argument,
                  "{} encoder: token ids span {}..{}, outside the vocabulary 0..{}", config_.model_type, lo, hi,
                  config_.vocab_size - 1);
    }
}

std::shared_ptr<Encoder> make_encoder(const EncoderConfig & config) {
    if (config.model_type == "bert") return std::make_shared<BertModel>(config);
    if (config.model_type == "mpnet") return std::make_shared<MPNetModel>(config);
    fail(ErrorKind::unsupported, "encoder model_type '{}' is not supported (supported: {})", config.model_type,
         fmt::join(supported_encoder_types(), ", "));
}

void load_encoder_weights(torch::nn::Module & module, const std::map<std::string, at::Tensor> & tensors,
                          const std::string & where, const std::vector<std::string> & prefixes,
                          const std::vector<std::string> & ignored) {
    auto starts_with = [](const std::string & s, const std::string & p) { return s.compare(0, p.size(), p) == 0; };
    std::map<std::string, at::Tensor> by_name;
    std::vector<std::string> unknown;
    auto params = module.named_parameters(/*recurse=*/true);
    for (const auto & [raw, tensor] : tensors) {
        std::string name = raw;
        for (const auto & p : prefixes) {
            if (starts_with(name, p)) {
                name = name.substr(p.size());
                break;
            }
        }
        bool skip = false;
        for (const auto & ig : ignored) skip = skip || starts_with(name, ig);
        if (skip) continue;
        if (params.find(name) == nullptr) {
            unknown.push_back(raw);
            continue;
        }
        CT3_CHECK(by_name.count(name) == 0, ErrorKind::bad_format, "{}: tensor '{}' appears both with and without a "
                  "prefix", where, name);
        by_name[name] = tensor;
    }
    if (!unknown.empty()) {
        logger("model")->warn("{}: ignoring {} unexpected tensors (first: '{}')", where, unknown.size(), unknown[0]);
    }
    torch::NoGradGuard no_grad;
    for (auto & item : params) {
        auto it = by_name.find(item.key());
        CT3_CHECK(it != by_name.end(), ErrorKind::not_found, "{}: tensor '{}' is missing (expected shape {})", where,
                  item.key(), c10::str(item.value().sizes()));
        const at::Tensor & src = it->second;
        CT3_CHECK(src.sizes() == item.value().sizes(), ErrorKind::bad_format,
                  "{}: tensor '{}' has shape {} (expected {})", where, it->first, c10::str(src.sizes()), c10::str(item.value().sizes()));
        CT3_CHECK(src.is_floating_point(), ErrorKind::bad_format, "{}: tensor '{}' has non-float dtype {}", where,
                  it->first, c10::toString(src.scalar_type()));
        item.value().copy_(src.to(item.value().dtype()));
    }
}

}  // namespace ct3
