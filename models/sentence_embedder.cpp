#include "models/sentence_embedder.h"

#include <algorithm>
#include <fstream>
#include <numeric>

#include <fmt/ranges.h>  // fmt::join

#include "models/error.h"
#include "models/hashed_embedder.h"
#include "models/log.h"
#include "models/safetensors.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

nlohmann::json read_json(const fs::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open '{}'", path.string());
    nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    CT3_CHECK(!j.is_discarded(), ErrorKind::bad_format, "'{}' is not valid JSON", path.string());
    return j;
}

bool ends_with(const std::string & s, const std::string & suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ModuleList {
    fs::path transformer_dir;
    fs::path pooling_dir;  // empty: no Pooling module listed
};

// modules.json lists the pipeline; module types are matched by class name so both the classic
// "sentence_transformers.models.Pooling" and newer module paths are accepted.
ModuleList read_modules(const fs::path & folder) {
    ModuleList out;
    fs::path file = folder / "modules.json";
    if (!fs::exists(file)) {
        logger("model")->warn("{}: no modules.json; assuming Transformer + mean pooling", folder.string());
        out.transformer_dir = folder;
        return out;
    }
    nlohmann::json j = read_json(file);
    CT3_CHECK(j.is_array() && !j.empty(), ErrorKind::bad_format, "'{}': expected a non-empty array of modules",
              file.string());
    for (size_t i = 0; i < j.size(); ++i) {
        const auto & m = j[i];
        CT3_CHECK(m.is_object() && m.contains("type") && m["type"].is_string(), ErrorKind::bad_format,
                  "'{}': module {} has no string field 'type'", file.string(), i);
        std::string type = m["type"].get<std::string>();
        std::string rel = m.contains("path") && m["path"].is_string() ? m["path"].get<std::string>() : "";
        CT3_CHECK(rel.find("..") == std::string::npos && (rel.empty() || rel[0] != '/'), ErrorKind::bad_format,
                  "'{}': module {} path '{}' leaves the model folder", file.string(), i, rel);
        fs::path dir = rel.empty() ? folder : folder / rel;
        if (ends_with(type, "Transformer")) {
            CT3_CHECK(i == 0, ErrorKind::unsupported, "'{}': the Transformer must be module 0 (found at {})",
                      file.string(), i);
            out.transformer_dir = dir;
        } else if (ends_with(type, "Pooling")) {
            CT3_CHECK(out.pooling_dir.empty(), ErrorKind::unsupported, "'{}': more than one Pooling module",
                      file.string());
            out.pooling_dir = dir;
        } else if (!ends_with(type, "Normalize")) {
            fail(ErrorKind::unsupported, "'{}': module type '{}' is not supported (supported: Transformer, Pooling, "
                 "Normalize)", file.string(), type);
        }
    }
    CT3_CHECK(!out.transformer_dir.empty(), ErrorKind::bad_format, "'{}': no Transformer module", file.string());
    CT3_CHECK(!out.pooling_dir.empty(), ErrorKind::unsupported,
              "'{}': no Pooling module (token-level outputs cannot be used as sentence embeddings)", file.string());
    return out;
}

Pooling read_pooling(const fs::path & dir, int64_t hidden) {
    fs::path file = dir / "config.json";
    if (dir.empty()) return Pooling::mean;
    nlohmann::json j = read_json(file);
    CT3_CHECK(j.is_object(), ErrorKind::bad_format, "'{}': expected a JSON object", file.string());
    std::vector<std::string> modes;
    if (j.contains("pooling_mode")) {  // newer sentence-transformers: "mean" | "cls" | "max" | ... or a list
        const auto & m = j["pooling_mode"];
        if (m.is_string()) modes.push_back(m.get<std::string>());
        else if (m.is_array()) for (const auto & e : m) modes.push_back(e.is_string() ? e.get<std::string>() : e.dump());
        else fail(ErrorKind::bad_format, "'{}': 'pooling_mode' must be a string or a list", file.string());
    }
    for (auto & [key, value] : j.items()) {  // classic: one boolean per mode
        if (key.rfind("pooling_mode_", 0) == 0 && value.is_boolean() && value.get<bool>()) {
            std::string mode = key.substr(13);
            if (ends_with(mode, "_tokens") && mode != "mean_sqrt_len_tokens") mode = mode.substr(0, mode.size() - 7);
            if (mode == "cls_token") mode = "cls";
            modes.push_back(mode);
        }
    }
    for (const char * key : {"word_embedding_dimension", "embedding_dimension"}) {
        if (j.contains(key) && j[key].is_number_integer()) {
            CT3_CHECK(j[key].get<int64_t>() == hidden, ErrorKind::bad_format, "'{}': {} = {} but the encoder's "
                      "hidden_size is {}", file.string(), key, j[key].get<int64_t>(), hidden);
        }
    }
    CT3_CHECK(modes.size() == 1, ErrorKind::unsupported,
              "'{}': expected exactly one pooling mode among mean, cls, max (found {}: {})", file.string(),
              modes.size(), fmt::join(modes, ", "));
    if (modes[0] == "mean") return Pooling::mean;
    if (modes[0] == "cls") return Pooling::cls;
    if (modes[0] == "max") return Pooling::max;
    fail(ErrorKind::unsupported, "'{}': pooling mode '{}' is not supported (supported: mean, cls, max)",
         file.string(), modes[0]);
}

// max_length: explicit option, else sentence_bert_config max_seq_length, else tokenizer_config
// model_max_length (ignoring transformers' "unlimited" sentinel), else 512; capped by the model.
int64_t resolve_max_length(const fs::path & dir, int64_t requested, int64_t model_limit, bool & lower_case) {
    int64_t value = requested;
    fs::path sbert = dir / "sentence_bert_config.json";
    if (fs::exists(sbert)) {
        nlohmann::json j = read_json(sbert);
        if (j.is_object() && j.contains("do_lower_case") && j["do_lower_case"].is_boolean()) {
            lower_case = j["do_lower_case"].get<bool>();
        }
        if (value <= 0 && j.is_object() && j.contains("max_seq_length") && j["max_seq_length"].is_number_integer()) {
            value = j["max_seq_length"].get<int64_t>();
        }
    }
    fs::path tok = dir / "tokenizer_config.json";
    if (value <= 0 && fs::exists(tok)) {
        nlohmann::json j = read_json(tok);
        if (j.is_object() && j.contains("model_max_length") && j["model_max_length"].is_number_integer()) {
            int64_t v = j["model_max_length"].get<int64_t>();
            if (v > 0 && v <= 1000000) value = v;
        }
    }
    if (value <= 0) value = 512;
    if (value > model_limit) {
        logger("model")->warn("{}: max_length {} exceeds the model's {} positions; using {}", dir.string(), value,
                              model_limit, model_limit);
        value = model_limit;
    }
    return value;
}

c10::Device parse_device(const std::string & spec) {
    c10::Device device(c10::kCPU);
    try {
        device = c10::Device(spec);
    } catch (const std::exception &) {
        fail(ErrorKind::invalid_argument, "device '{}' is not valid (expected cpu, cuda or cuda:N)", spec);
    }
    if (device.is_cuda()) {
        CT3_CHECK(torch::cuda::is_available(), ErrorKind::unavailable,
                  "device '{}' requested but CUDA is not available in this build or machine", spec);
    } else {
        CT3_CHECK(device.is_cpu(), ErrorKind::unsupported, "device '{}' is not supported (expected cpu or cuda)", spec);
    }
    return device;
}

std::string ascii_lower(std::string s) {
    for (char & c : s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
}

}  // namespace

const char * pooling_name(Pooling pooling) {
    switch (pooling) {
        case Pooling::mean: return "mean";
        case Pooling::cls: return "cls";
        case Pooling::max: return "max";
    }
    return "?";
}

std::unique_ptr<SentenceEmbedder> SentenceEmbedder::load(const fs::path & folder, const EmbedderOptions & options) {
    CT3_CHECK(fs::is_directory(folder), ErrorKind::not_found, "sentence-transformers folder '{}' does not exist",
              folder.string());
    CT3_CHECK(options.batch_size >= 1, ErrorKind::invalid_argument, "embedder batch_size {} must be >= 1",
              options.batch_size);
    CT3_CHECK(options.max_length >= 0, ErrorKind::invalid_argument, "embedder max_length {} must be >= 0",
              options.max_length);
    std::unique_ptr<SentenceEmbedder> e(new SentenceEmbedder());
    e->folder_ = folder;
    e->batch_size_ = options.batch_size;
    e->device_ = parse_device(options.device);
    ModuleList modules = read_modules(folder);
    const fs::path dir = modules.transformer_dir;

    fs::path config_file = dir / "config.json";
    EncoderConfig config = EncoderConfig::from_json(read_json(config_file), config_file.string());
    e->pooling_ = read_pooling(modules.pooling_dir, config.hidden_size);
    e->max_length_ = resolve_max_length(dir, options.max_length, config.max_tokens(), e->lower_case_);

    e->encoder_ = make_encoder(config);
    Checkpoint checkpoint = Checkpoint::open(dir);
    std::map<std::string, at::Tensor> tensors;
    uint64_t hash = fnv1a64(nullptr, 0);
    for (const auto & name : checkpoint.names()) {  // sorted, so the checksum ignores file layout
        at::Tensor t = checkpoint.load(name).contiguous();
        hash = fnv1a64(name.data(), name.size(), hash);
        hash = fnv1a64(t.data_ptr(), t.numel() * t.element_size(), hash);
        tensors.emplace(name, std::move(t));
    }
    e->weights_checksum_ = fmt::format("{:016x}", hash);
    load_encoder_weights(*e->encoder_, tensors, checkpoint.path().string(), {config.model_type + ".", "model."},
                         {"pooler.", "embeddings.position_ids", "lm_head.", "cls."});
    e->encoder_->to(e->device_);
    e->encoder_->eval();

    e->tokenizer_ = load_tokenizer(dir);
    // Pad with the model's padding_idx, not the tokenizer's pad token: MPNet derives position ids from
    // it, and the two can differ (the tiny MPNet fixture has both "<pad>" = 1 and "[PAD]" = 4).
    e->pad_id_ = config.pad_token_id;
    logger("model")->info("loaded {} embedder from {} (dim {}, {} pooling, max_length {}, {})", config.model_type,
                          folder.string(), config.hidden_size, pooling_name(e->pooling_), e->max_length_,
                          e->device_.str());
    return e;
}

at::Tensor SentenceEmbedder::embed(const std::vector<std::string> & texts) {
    std::vector<std::vector<int32_t>> ids;
    ids.reserve(texts.size());
    EncodeOptions encode;
    encode.add_special_tokens = true;
    encode.max_length = static_cast<size_t>(max_length_);
    for (const auto & t : texts) ids.push_back(tokenizer_->encode(lower_case_ ? ascii_lower(t) : t, encode));
    return embed_ids(ids);
}

at::Tensor SentenceEmbedder::embed_ids(const std::vector<std::vector<int32_t>> & ids) {
    const int64_t n = static_cast<int64_t>(ids.size());
    at::Tensor out = torch::zeros({n, dim()}, torch::kFloat32);
    // Longest first (as sentence-transformers does) so each batch pads little; rows go back in place.
    std::vector<int64_t> order(ids.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a].size() > ids[b].size(); });
    for (int64_t start = 0; start < n; start += batch_size_) {
        int64_t end = std::min(n, start + batch_size_);
        std::vector<const std::vector<int32_t> *> batch;
        for (int64_t i = start; i < end; ++i) batch.push_back(&ids[order[i]]);
        if (batch.front()->empty()) break;  // sorted: everything from here on is empty -> zero rows
        at::Tensor pooled = embed_batch(batch);
        for (int64_t i = start; i < end; ++i) {
            if (!ids[order[i]].empty()) out[order[i]].copy_(pooled[i - start]);
        }
    }
    return out;
}

at::Tensor SentenceEmbedder::embed_batch(const std::vector<const std::vector<int32_t> *> & batch) {
    torch::NoGradGuard no_grad;
    const int64_t b = static_cast<int64_t>(batch.size());
    const int64_t t = static_cast<int64_t>(batch.front()->size());
    at::Tensor ids = torch::full({b, t}, pad_id_, torch::kInt64);
    at::Tensor mask = torch::zeros({b, t}, torch::kInt64);
    auto ids_a = ids.accessor<int64_t, 2>();
    auto mask_a = mask.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i) {
        for (size_t j = 0; j < batch[i]->size(); ++j) {
            ids_a[i][static_cast<int64_t>(j)] = (*batch[i])[j];
            mask_a[i][static_cast<int64_t>(j)] = 1;
        }
    }
    ids = ids.to(device_);
    mask = mask.to(device_);
    at::Tensor h = encoder_->forward(ids, mask).to(torch::kFloat32);
    at::Tensor m = mask.unsqueeze(-1).to(torch::kFloat32);
    at::Tensor pooled;
    switch (pooling_) {
        case Pooling::mean: pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9); break;
        case Pooling::cls: pooled = h.select(1, 0); break;
        case Pooling::max: pooled = std::get<0>(h.masked_fill(m == 0, -1e9).max(1)); break;
    }
    pooled = pooled / pooled.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);  // F.normalize(p=2, eps=1e-12)
    return pooled.cpu();
}

at::Tensor SentenceEmbedder::hidden_states(const std::vector<int32_t> & ids) {
    torch::NoGradGuard no_grad;
    at::Tensor t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0).to(device_);
    return encoder_->forward(t, torch::ones_like(t))[0].to(torch::kFloat32).cpu();
}

nlohmann::json SentenceEmbedder::identity() const {
    // The folder's name and a checksum of the weights, not its path: a KB stays valid when the model
    // folder moves, and a fine-tuned model with the same name and shapes is still told apart.
    std::string name = folder_.filename().string();
    if (name.empty()) name = folder_.parent_path().filename().string();
    return {{"type", "sentence-transformers"},  {"name", name},
            {"model_type", config().model_type}, {"pooling", pooling_name(pooling_)},
            {"max_length", max_length_},         {"normalize", true},
            {"dim", dim()},                      {"weights_fnv1a64", weights_checksum_}};
}

}  // namespace ct3
