// Reader for llama2.c "legacy v0" checkpoints (run.c's format): 7 little-endian int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (< 0: unshared classifier), seq_len
// then float32 tensors token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
// freq_cis_real/imag (unused), [wcls]. The file size must match the header exactly.
//
// llama2.c rotates adjacent pairs (2i, 2i+1) while the HF layout rotates halves, so wq/wk rows are
// permuted as transformers' convert_llama_weights_to_hf.py does; the result is an ordinary HF-layout model.
#pragma once

#include <filesystem>

#include "models/llama.h"
#include "models/llama_config.h"

namespace ct3 {

// The config implied by the header (rms eps 1e-5, rope theta 10000, bos 1, eos 2).
LlamaConfig read_llama2c_config(const std::filesystem::path & path);

// Loads the weights into a float32 CPU model. Throws ct3::Error naming the file on any inconsistency.
LlamaForCausalLM load_llama2c(const std::filesystem::path & path);

// HF's permute(w, n_heads, dim1, dim2): interleaved-pair rows -> rotate_half rows, per head.
at::Tensor permute_rope_rows(const at::Tensor & w, int64_t n_heads);

}  // namespace ct3
