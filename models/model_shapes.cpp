#include "models/model_shapes.h"

#include "models/error.h"

namespace ct3 {

namespace {

struct Shape {
    const char * name;
    int64_t vocab, hidden, intermediate, layers, heads, kv_heads;
    bool tied;
};

// The shapes of the public checkpoints' config.json files.
const Shape kShapes[] = {
    {"llama3-8b", 128256, 4096, 14336, 32, 32, 8, false},
    {"llama3.2-1b", 128256, 2048, 8192, 16, 32, 8, true},
    {"stories260k", 512, 64, 172, 5, 8, 4, true},
};

}  // namespace

std::string random_llama_shapes() {
    std::string names;
    for (const Shape & s : kShapes) names += std::string(names.empty() ? "" : ", ") + s.name;
    return names;
}

LlamaConfig llama_shape_config(const std::string & shape_name) {
    for (const Shape & s : kShapes) {
        if (shape_name != s.name) continue;
        LlamaConfig config;
        config.vocab_size = s.vocab;
        config.hidden_size = s.hidden;
        config.intermediate_size = s.intermediate;
        config.num_hidden_layers = s.layers;
        config.num_attention_heads = s.heads;
        config.num_key_value_heads = s.kv_heads;
        config.head_dim = s.hidden / s.heads;
        config.max_position_embeddings = 8192;
        config.rope.theta = 500000.0;
        config.tie_word_embeddings = s.tied;
        config.eos_token_ids = {2};
        return config;
    }
    fail(ErrorKind::invalid_argument, "--shape '{}' is unknown (expected one of: {})", shape_name, random_llama_shapes());
}

LlamaForCausalLM random_llama(const std::string & shape_name, const c10::Device & device, c10::ScalarType dtype) {
    LlamaForCausalLM model(llama_shape_config(shape_name), /*init_weights=*/false);
    model->to(device, dtype);
    model->eval();
    return model;
}

}  // namespace ct3
