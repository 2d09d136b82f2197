// ct3_sp_shim — a tiny C API over libsentencepiece.
//
// Why a C shim: Debian's libsentencepiece.so.0 exports its own built-in protobuf (3.14) while
// libtorch links libprotobuf.so.32 (3.21); one binary linking both crashes at start-up. ct3_models
// therefore never links sentencepiece: it dlopen()s this shim (RTLD_LOCAL | RTLD_DEEPBIND) so that
// sentencepiece and its protobuf stay in their own symbol scope. Only C types cross this boundary.
//
// Ownership: every pointer returned by ct3_sp_* (handle, id arrays, strings, error messages) is
// allocated by the shim and released with the matching free function, never with free()/delete.
// Thread safety: a loaded handle is immutable; all query/encode/decode calls may run concurrently.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a signature below changes; the loader refuses a shim of another version.
#define CT3_SP_SHIM_ABI_VERSION 2  // 2: ct3_sp_train

typedef struct ct3_sp ct3_sp;

int32_t ct3_sp_abi_version(void);

// Loads a SentencePiece model file. Returns NULL on failure and sets *error (when error != NULL) to
// a message to release with ct3_sp_free_string.
ct3_sp * ct3_sp_load(const char * path, char ** error);
void ct3_sp_free(ct3_sp * sp);

// Encodes `len` bytes of UTF-8 text to piece ids (no BOS/EOS). Returns 0 and sets *ids / *n_ids
// (release *ids with ct3_sp_free_ids; NULL when empty), or -1 with *error set.
int32_t ct3_sp_encode(const ct3_sp * sp, const char * text, size_t len, int32_t ** ids, size_t * n_ids, char ** error);
void ct3_sp_free_ids(int32_t * ids);

// Decodes ids with sentencepiece's decoder (byte fallback, '▁' -> space, control pieces dropped).
// Returns 0 and sets *text / *text_len (NUL-terminated; release with ct3_sp_free_string), or -1 with
// *error set (an id out of range is an error).
int32_t ct3_sp_decode(const ct3_sp * sp, const int32_t * ids, size_t n_ids, char ** text, size_t * text_len,
                      char ** error);
void ct3_sp_free_string(char * s);

int32_t ct3_sp_vocab_size(const ct3_sp * sp);
// The raw piece of an id ("▁the", "<0x0A>", "<s>"): a pointer into the model (valid until
// ct3_sp_free), NUL-terminated, length in *len. NULL when the id is out of range.
const char * ct3_sp_id_to_piece(const ct3_sp * sp, int32_t id, size_t * len);
// The id of a raw piece, or -1 when the vocabulary has no such piece.
int32_t ct3_sp_piece_to_id(const ct3_sp * sp, const char * piece, size_t len);

// Special ids; -1 when the model defines none.
int32_t ct3_sp_bos_id(const ct3_sp * sp);
int32_t ct3_sp_eos_id(const ct3_sp * sp);
int32_t ct3_sp_pad_id(const ct3_sp * sp);
int32_t ct3_sp_unk_id(const ct3_sp * sp);

// Piece types; 0 for ids out of range.
int32_t ct3_sp_is_control(const ct3_sp * sp, int32_t id);
int32_t ct3_sp_is_unknown(const ct3_sp * sp, int32_t id);
int32_t ct3_sp_is_byte(const ct3_sp * sp, int32_t id);
int32_t ct3_sp_is_unused(const ct3_sp * sp, int32_t id);

// Trains a model with sentencepiece's trainer library (SentencePieceTrainer::Train), writing
// <model_prefix>.model and .vocab. `flags` holds one "--key=value" per line (newline-separated, so
// that values such as paths may contain spaces); the keys are spm_train's TrainerSpec fields plus
// normalization_rule_name and minloglevel. One extra key, "--random_seed=N", is passed to
// sentencepiece's SetRandomGeneratorSeed. Training runs on a fresh thread, because some
// sentencepiece versions keep a thread_local generator seeded once per thread. Pass
// --minloglevel=3 from a host that was loaded with RTLD_DEEPBIND: sentencepiece's log writes to a
// std::cerr that is not initialised there and crashes (see models/sentencepiece_trainer.h).
// Returns 0, or -1 with *error set. Not reentrant: the seed and log level are process-global state
// of the shim, so callers serialise calls.
int32_t ct3_sp_train(const char * flags, char ** error);

#ifdef __cplusplus
}
#endif
