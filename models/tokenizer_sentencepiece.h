// SentencePiece tokenizer (Llama-family .model files), backed by the dlopen'ed ct3_sp_shim.
//
// libsentencepiece is never linked into ct3 binaries (its built-in protobuf clashes with libtorch's);
// the shim is found, in order, at: $CT3_SP_SHIM, the build tree, the install prefix, then beside the
// executable (<exe dir>/../lib/ct3/, <exe dir>/../lib/, <exe dir>/).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "models/tokenizer.h"

struct ct3_sp;

namespace ct3 {

class SentencePieceTokenizer : public Tokenizer {
public:
    // Throws ct3::Error naming `model_file` when it is missing or not a SentencePiece model, and
    // ErrorKind::unavailable when the shim library cannot be loaded.
    explicit SentencePieceTokenizer(const std::filesystem::path & model_file);

    // Llama convention: BOS (never EOS) when add_special_tokens; max_length cuts the tail.
    std::vector<int32_t> encode(const std::string & text, const EncodeOptions & options = {}) const override;
    // sentencepiece's decoder (byte fallback, dummy-prefix removal). skip_special drops control and
    // unknown ids; otherwise control ids are written as their piece text ("<s>").
    std::string decode(const std::vector<int32_t> & ids, bool skip_special = true) const override;
    // The text contribution of one id: '▁' -> ' ', "<0x0A>" -> the raw byte "\n" (so a UTF-8
    // character split over byte pieces reassembles when pieces are concatenated), control -> "".
    // Unlike decode(), the dummy-prefix space of a leading word is kept.
    std::string id_to_piece(int32_t id) const override;
    // The id of a raw vocabulary piece ("▁the", "<0x0A>", "<s>").
    std::optional<int32_t> piece_to_id(const std::string & piece) const override;
    size_t vocab_size() const override { return texts_.size(); }

    int32_t bos_id() const override { return bos_id_; }
    int32_t eos_id() const override { return eos_id_; }
    int32_t pad_id() const override { return pad_id_; }
    int32_t unk_id() const override { return unk_id_; }
    // Control (<s>, </s>, ...) and unknown pieces, as HF's all_special_ids for Llama tokenizers.
    bool is_special(int32_t id) const override;

    // The raw piece of an id as stored in the model ("▁the"); throws on an id out of range.
    std::string raw_piece(int32_t id) const;
    const std::filesystem::path & path() const { return path_; }

private:
    void check_id(int32_t id) const;
    std::string decode_plain(const int32_t * ids, size_t n) const;

    std::filesystem::path path_;
    std::unique_ptr<ct3_sp, void (*)(ct3_sp *)> handle_{nullptr, nullptr};  // freed by the shim
    std::vector<std::string> texts_;    // id_to_piece() answers, precomputed
    std::vector<uint8_t> special_;      // 1 = control or unknown
    int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1, unk_id_ = -1;
};

// False in AddressSanitizer builds. ASan forbids RTLD_DEEPBIND, so there the shim is loaded with
// RTLD_LOCAL only and sentencepiece's built-in protobuf binds to libtorch's libprotobuf.so.32; checked:
// loading a model then fails cleanly (ct3::Error: "compiled against version 3.14.0 ... installed
// version (3.21.12)"), so SentencePiece is unusable, but nothing crashes. Tests skip on false.
bool sentencepiece_shim_isolated();

// The path of the shim library that was (or would be) loaded; throws ErrorKind::unavailable listing
// the candidates tried when none can be loaded.
std::string sentencepiece_shim_path();

// Runs sentencepiece's trainer in the shim (ct3_sp_train; flags one "--key=value" per line).
// Calls are serialised. Throws ct3::Error with the trainer's message. Use train_sentencepiece()
// (models/sentencepiece_trainer.h) rather than this raw entry point.
void sentencepiece_shim_train(const std::string & flags);

}  // namespace ct3
