#include "models/llama2c.h"

#include <array>
#include <cstring>
#include <fstream>

#include "models/error.h"
#include "models/log.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

struct Header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);

Header read_header(const fs::path & path, uint64_t * file_size) {
    std::error_code ec;
    *file_size = fs::file_size(path, ec);
    CT3_CHECK(!ec, ErrorKind::not_found, "cannot read llama2.c checkpoint {}: {}", path.string(), ec.message());
    CT3_CHECK(*file_size >= kHeaderBytes, ErrorKind::bad_format,
              "{}: {} bytes is too short for a llama2.c header ({} bytes)", path.string(), *file_size, kHeaderBytes);
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in.good(), ErrorKind::io, "cannot open llama2.c checkpoint {}", path.string());
    std::array<int32_t, 7> h{};
    in.read(reinterpret_cast<char *>(h.data()), kHeaderBytes);
    CT3_CHECK(in.good(), ErrorKind::io, "{}: cannot read the header", path.string());
    return Header{h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
}

LlamaConfig config_from_header(const Header & h, const std::string & source) {
    auto positive = [&](int32_t v, const char * field) {
        CT3_CHECK(v > 0, ErrorKind::bad_format, "{}: header field {} = {} must be > 0", source, field, v);
    };
    positive(h.dim, "dim");
    positive(h.hidden_dim, "hidden_dim");
    positive(h.n_layers, "n_layers");
    positive(h.n_heads, "n_heads");
    positive(h.n_kv_heads, "n_kv_heads");
    CT3_CHECK(h.vocab_size != 0 && h.vocab_size != INT32_MIN, ErrorKind::bad_format,
              "{}: header field vocab_size = {} is invalid", source, h.vocab_size);
    positive(h.seq_len, "seq_len");
    CT3_CHECK(h.dim % h.n_heads == 0 && (h.dim / h.n_heads) % 2 == 0, ErrorKind::bad_format,
              "{}: header dim {} must split into n_heads {} heads of even size", source, h.dim, h.n_heads);
    CT3_CHECK(h.n_heads % h.n_kv_heads == 0, ErrorKind::bad_format,
              "{}: header n_heads {} must be a multiple of n_kv_heads {}", source, h.n_heads, h.n_kv_heads);
    LlamaConfig c;
    c.vocab_size = h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size;
    c.hidden_size = h.dim;
    c.intermediate_size = h.hidden_dim;
    c.num_hidden_layers = h.n_layers;
    c.num_attention_heads = h.n_heads;
    c.num_key_value_heads = h.n_kv_heads;
    c.head_dim = h.dim / h.n_heads;
    c.max_position_embeddings = h.seq_len;
    c.rms_norm_eps = 1e-5;
    c.rope.theta = 10000.0;
    c.tie_word_embeddings = h.vocab_size > 0;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    c.dtype = "float32";
    c.validate(source);
    return c;
}

// Number of float32 values the body must hold. Computed in 128 bits: a hostile header may multiply
// factors of up to 2^31 and must produce a size mismatch, not a wrapped product.
using u128 = unsigned __int128;
u128 expected_floats(const LlamaConfig & c, bool shared) {
    const u128 dim = c.hidden_size, hidden = c.intermediate_size, layers = c.num_hidden_layers;
    const u128 kv_dim = static_cast<uint64_t>(c.num_key_value_heads * c.head_dim), vocab = c.vocab_size;
    const u128 head = c.head_dim, seq = c.max_position_embeddings;
    u128 n = vocab * dim;                                     // token_embedding
    n += layers * dim;                                            // rms_att
    n += layers * (dim * dim + 2 * kv_dim * dim + dim * dim);     // wq, wk, wv, wo
    n += layers * dim;                                            // rms_ffn
    n += layers * 3 * hidden * dim;                               // w1, w2, w3
    n += dim;                                                     // rms_final
    n += seq * head;                                              // freq_cis_real + imag: 2 * seq * head/2
    if (!shared) n += vocab * dim;                                // wcls
    return n;
}

}  // namespace

at::Tensor permute_rope_rows(const at::Tensor & w, int64_t n_heads) {
    const int64_t dim1 = w.size(0), dim2 = w.size(1);
    return w.view({n_heads, dim1 / n_heads / 2, 2, dim2}).transpose(1, 2).reshape({dim1, dim2});
}

LlamaConfig read_llama2c_config(const fs::path & path) {
    uint64_t size = 0;
    return config_from_header(read_header(path, &size), path.string());
}

LlamaForCausalLM load_llama2c(const fs::path & path) {
    const std::string source = path.string();
    uint64_t size = 0;
    const Header h = read_header(path, &size);
    const LlamaConfig c = config_from_header(h, source);
    const bool shared = h.vocab_size > 0;
    const u128 expected = kHeaderBytes + expected_floats(c, shared) * sizeof(float);
    CT3_CHECK(static_cast<u128>(size) == expected, ErrorKind::bad_format,
              "{}: file has {} bytes but its header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, "
              "vocab_size {}, seq_len {}) implies {} bytes",
              source, size, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len,
              static_cast<long double>(expected));
    const uint64_t n_floats = (size - kHeaderBytes) / sizeof(float);

    at::Tensor body = torch::empty({static_cast<int64_t>(n_floats)}, torch::kFloat32);
    {
        std::ifstream in(path, std::ios::binary);
        in.seekg(static_cast<std::streamoff>(kHeaderBytes));
        in.read(reinterpret_cast<char *>(body.data_ptr<float>()),
                static_cast<std::streamsize>(n_floats * sizeof(float)));
        CT3_CHECK(in.good(), ErrorKind::io, "{}: read failed", source);
    }

    int64_t offset = 0;
    auto take = [&](std::initializer_list<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        at::Tensor t = body.slice(0, offset, offset + n).view(shape);
        offset += n;
        return t;
    };
    const int64_t L = c.num_hidden_layers, D = c.hidden_size, H = c.intermediate_size, V = c.vocab_size;
    const int64_t KV = c.num_key_value_heads * c.head_dim;
    at::Tensor embed = take({V, D});
    at::Tensor rms_att = take({L, D});
    at::Tensor wq = take({L, D, D}), wk = take({L, KV, D}), wv = take({L, KV, D}), wo = take({L, D, D});
    at::Tensor rms_ffn = take({L, D});
    at::Tensor w1 = take({L, H, D}), w2 = take({L, D, H}), w3 = take({L, H, D});
    at::Tensor rms_final = take({D});
    take({c.max_position_embeddings * c.head_dim});  // freq_cis_real/imag: recomputed by RoPE
    at::Tensor wcls = shared ? at::Tensor() : take({V, D});
    CT3_ASSERT(static_cast<uint64_t>(offset) == n_floats);

    LlamaForCausalLM model(c);
    model->load_parameter("model.embed_tokens.weight", embed, source);
    for (int64_t l = 0; l < L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        model->load_parameter(p + "input_layernorm.weight", rms_att[l], source);
        model->load_parameter(p + "self_attn.q_proj.weight", permute_rope_rows(wq[l], c.num_attention_heads), source);
        model->load_parameter(p + "self_attn.k_proj.weight", permute_rope_rows(wk[l], c.num_key_value_heads), source);
        model->load_parameter(p + "self_attn.v_proj.weight", wv[l], source);
        model->load_parameter(p + "self_attn.o_proj.weight", wo[l], source);
        model->load_parameter(p + "post_attention_layernorm.weight", rms_ffn[l], source);
        model->load_parameter(p + "mlp.gate_proj.weight", w1[l], source);
        model->load_parameter(p + "mlp.down_proj.weight", w2[l], source);
        model->load_parameter(p + "mlp.up_proj.weight", w3[l], source);
    }
    model->load_parameter("model.norm.weight", rms_final, source);
    if (!shared) model->load_parameter("lm_head.weight", wcls, source);
    logger("model")->debug("loaded llama2.c checkpoint {}: dim {}, {} layers, vocab {}", source, D, L, V);
    return model;
}

}  // namespace ct3
