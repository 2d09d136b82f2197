#include "models/pretrain/hf_export.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kb/kb_files.h"
#include "models/error.h"
#include "models/log.h"
#include "models/pretrain/pretrain_model.h"
#include "models/safetensors.h"
#include "models/ttt_loader.h"

namespace fs = std::filesystem;

namespace ct3::pretrain {

nlohmann::json hf_config_json(const LlamaConfig & c, const std::string & dtype) {
    CT3_CHECK(c.model_type == "llama", ErrorKind::unsupported, "export writes Llama configs (model_type '{}')",
              c.model_type);
    nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"vocab_size", c.vocab_size},
                        {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size},
                        {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"num_key_value_heads", c.num_key_value_heads},
                        {"head_dim", c.head_dim},
                        {"max_position_embeddings", c.max_position_embeddings},
                        {"rms_norm_eps", c.rms_norm_eps},
                        {"rope_theta", c.rope.theta},
                        {"rope_scaling", nullptr},
                        {"tie_word_embeddings", c.tie_word_embeddings},
                        {"attention_bias", false},
                        {"attention_dropout", 0.0},
                        {"mlp_bias", false},
                        {"hidden_act", "silu"},
                        {"initializer_range", 0.02},
                        {"pretraining_tp", 1},
                        {"use_cache", true},
                        {"torch_dtype", dtype}};
    CT3_CHECK(c.rope.type == "default", ErrorKind::unsupported, "export writes default RoPE only (got '{}')",
              c.rope.type);
    j["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::json(c.bos_token_id) : nlohmann::json(nullptr);
    if (c.eos_token_ids.size() == 1) {
        j["eos_token_id"] = c.eos_token_ids.front();
    } else if (c.eos_token_ids.empty()) {
        j["eos_token_id"] = nullptr;
    } else {
        j["eos_token_id"] = c.eos_token_ids;
    }
    if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
    return j;
}

void export_hf(const ExportOptions & o) {
    CT3_CHECK(o.dtype == "bfloat16" || o.dtype == "float32", ErrorKind::invalid_argument,
              "--dtype must be bfloat16 or float32 (got '{}')", o.dtype);
    const fs::path config_path = o.run_dir / "config.json";
    const PretrainModelConfig config = PretrainModelConfig::from_json(
        nlohmann::json::parse(kb::read_whole_file(config_path, "run config")), config_path.string());
    const fs::path weights = o.run_dir / "checkpoint" / "model.safetensors";
    CT3_CHECK(fs::exists(weights), ErrorKind::not_found, "{} does not exist: train the run first (ct3-pretrain train)",
              weights.string());
    CT3_CHECK(fs::exists(o.tokenizer_model), ErrorKind::not_found, "tokenizer model {} does not exist",
              o.tokenizer_model.string());
    fs::create_directories(o.out_dir);

    const at::ScalarType dtype = o.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
    auto file = SafetensorsFile::open(weights);
    size_t n_tensors = 0;
    if (config.is_ttt()) {
        // The checkpoint holds the module's own names; the TTT folder layout renames them (ttt_loader.h).
        TTTForCausalLM model(*config.ttt);
        torch::NoGradGuard no_grad;
        for (auto & p : model->named_parameters(/*recurse=*/true)) {
            CT3_CHECK(file->contains(p.key()), ErrorKind::bad_format, "{}: tensor '{}' is missing",
                      weights.string(), p.key());
            p.value().copy_(file->load(p.key()));
            ++n_tensors;
        }
        save_ttt_model(*model, o.out_dir, dtype);
    } else {
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        for (const TensorInfo & info : file->tensors()) {
            tensors.emplace_back(info.name, file->load(info.name).to(dtype));
        }
        save_safetensors(o.out_dir / "model.safetensors", tensors);
        n_tensors = tensors.size();
        kb::write_file_atomic(o.out_dir / "config.json", hf_config_json(config.llama, o.dtype).dump(2) + "\n");
    }
    nlohmann::json generation = {{"_from_model_config", true}, {"do_sample", false}};
    if (config.bos_token_id() >= 0) generation["bos_token_id"] = config.bos_token_id();
    if (!config.eos_token_ids().empty()) generation["eos_token_id"] = config.eos_token_ids().front();
    kb::write_file_atomic(o.out_dir / "generation_config.json", generation.dump(2) + "\n");

    kb::write_file_atomic(o.out_dir / "tokenizer.model", kb::read_whole_file(o.tokenizer_model, "tokenizer model"));
    // transformers' LlamaTokenizer over the sentencepiece model: BOS added, no EOS, sentencepiece's own
    // handling of spaces (legacy), no cleanup of spaces around punctuation (code must round-trip).
    const nlohmann::json tokenizer_config = {{"tokenizer_class", "LlamaTokenizer"},
                                             {"bos_token", "<s>"},
                                             {"eos_token", "</s>"},
                                             {"unk_token", "<unk>"},
                                             {"pad_token", nullptr},
                                             {"add_bos_token", true},
                                             {"add_eos_token", false},
                                             {"legacy", true},
                                             {"clean_up_tokenization_spaces", false},
                                             {"model_max_length", config.max_position_embeddings()},
                                             {"sp_model_kwargs", nlohmann::json::object()}};
    kb::write_file_atomic(o.out_dir / "tokenizer_config.json", tokenizer_config.dump(2) + "\n");
    const nlohmann::json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
    kb::write_file_atomic(o.out_dir / "special_tokens_map.json", special.dump(2) + "\n");
    logger("pretrain")->info("exported {} ({}, {} tensors, {}) to {}", o.run_dir.string(), config.describe(),
                             n_tensors, o.dtype, o.out_dir.string());
}

}  // namespace ct3::pretrain
