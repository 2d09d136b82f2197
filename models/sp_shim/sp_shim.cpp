// The C shim over libsentencepiece (see sp_shim.h for why it exists). Every entry point catches
// all exceptions: nothing may unwind across the C boundary into a dlopen'ing host.
#include "models/sp_shim/sp_shim.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

struct ct3_sp {
    sentencepiece::SentencePieceProcessor processor;
    int32_t size = 0;
};

namespace {

char * copy_string(const std::string & s) {
    char * out = static_cast<char *>(std::malloc(s.size() + 1));
    if (out == nullptr) return nullptr;
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    return out;
}

void set_error(char ** error, const std::string & message) {
    if (error != nullptr) *error = copy_string(message);
}

bool in_range(const ct3_sp * sp, int32_t id) { return sp != nullptr && id >= 0 && id < sp->size; }

}  // namespace

extern "C" {

int32_t ct3_sp_abi_version(void) { return CT3_SP_SHIM_ABI_VERSION; }

ct3_sp * ct3_sp_load(const char * path, char ** error) {
    if (error != nullptr) *error = nullptr;
    if (path == nullptr) {
        set_error(error, "no path given");
        return nullptr;
    }
    try {
        auto sp = std::make_unique<ct3_sp>();
        const auto status = sp->processor.Load(path);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return nullptr;
        }
        sp->size = sp->processor.GetPieceSize();
        if (sp->size <= 0) {
            set_error(error, "the model has no pieces");
            return nullptr;
        }
        return sp.release();
    } catch (const std::exception & e) {
        set_error(error, e.what());
    } catch (...) {
        set_error(error, "unknown exception in sentencepiece");
    }
    return nullptr;
}

void ct3_sp_free(ct3_sp * sp) { delete sp; }

int32_t ct3_sp_encode(const ct3_sp * sp, const char * text, size_t len, int32_t ** ids, size_t * n_ids, char ** error) {
    if (error != nullptr) *error = nullptr;
    if (ids == nullptr || n_ids == nullptr || sp == nullptr || (text == nullptr && len > 0)) {
        set_error(error, "invalid arguments to ct3_sp_encode");
        return -1;
    }
    *ids = nullptr;
    *n_ids = 0;
    try {
        std::vector<int> out;
        const auto status = sp->processor.Encode(absl::string_view(text == nullptr ? "" : text, len), &out);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return -1;
        }
        if (out.empty()) return 0;
        auto * buffer = static_cast<int32_t *>(std::malloc(out.size() * sizeof(int32_t)));
        if (buffer == nullptr) {
            set_error(error, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < out.size(); ++i) buffer[i] = static_cast<int32_t>(out[i]);
        *ids = buffer;
        *n_ids = out.size();
        return 0;
    } catch (const std::exception & e) {
        set_error(error, e.what());
    } catch (...) {
        set_error(error, "unknown exception in sentencepiece");
    }
    return -1;
}

void ct3_sp_free_ids(int32_t * ids) { std::free(ids); }

int32_t ct3_sp_decode(const ct3_sp * sp, const int32_t * ids, size_t n_ids, char ** text, size_t * text_len,
                      char ** error) {
    if (error != nullptr) *error = nullptr;
    if (sp == nullptr || text == nullptr || text_len == nullptr || (ids == nullptr && n_ids > 0)) {
        set_error(error, "invalid arguments to ct3_sp_decode");
        return -1;
    }
    *text = nullptr;
    *text_len = 0;
    try {
        std::vector<int> in(n_ids);
        for (size_t i = 0; i < n_ids; ++i) {
            // sentencepiece indexes its piece table without a bounds check: reject bad ids here.
            if (!in_range(sp, ids[i])) {
                set_error(error, "id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                     " is out of range [0, " + std::to_string(sp->size) + ")");
                return -1;
            }
            in[i] = ids[i];
        }
        std::string out;
        const auto status = sp->processor.Decode(in, &out);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return -1;
        }
        *text = copy_string(out);
        if (*text == nullptr) {
            set_error(error, "out of memory");
            return -1;
        }
        *text_len = out.size();
        return 0;
    } catch (const std::exception & e) {
        set_error(error, e.what());
    } catch (...) {
        set_error(error, "unknown exception in sentencepiece");
    }
    return -1;
}

void ct3_sp_free_string(char * s) { std::free(s); }

int32_t ct3_sp_vocab_size(const ct3_sp * sp) { return sp == nullptr ? 0 : sp->size; }

const char * ct3_sp_id_to_piece(const ct3_sp * sp, int32_t id, size_t * len) {
    if (!in_range(sp, id)) return nullptr;
    const std::string & piece = sp->processor.IdToPiece(id);
    if (len != nullptr) *len = piece.size();
    return piece.c_str();
}

int32_t ct3_sp_piece_to_id(const ct3_sp * sp, const char * piece, size_t len) {
    if (sp == nullptr || (piece == nullptr && len > 0)) return -1;
    try {
        const absl::string_view view(piece == nullptr ? "" : piece, len);
        const int id = sp->processor.PieceToId(view);
        // PieceToId answers unk_id for unknown pieces: only a round trip tells a real match.
        if (!in_range(sp, id) || sp->processor.IdToPiece(id) != std::string(view.data(), view.size())) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

int32_t ct3_sp_bos_id(const ct3_sp * sp) { return sp == nullptr ? -1 : sp->processor.bos_id(); }
int32_t ct3_sp_eos_id(const ct3_sp * sp) { return sp == nullptr ? -1 : sp->processor.eos_id(); }
int32_t ct3_sp_pad_id(const ct3_sp * sp) { return sp == nullptr ? -1 : sp->processor.pad_id(); }
int32_t ct3_sp_unk_id(const ct3_sp * sp) { return sp == nullptr ? -1 : sp->processor.unk_id(); }

int32_t ct3_sp_is_control(const ct3_sp * sp, int32_t id) { return in_range(sp, id) && sp->processor.IsControl(id); }
int32_t ct3_sp_is_unknown(const ct3_sp * sp, int32_t id) { return in_range(sp, id) && sp->processor.IsUnknown(id); }
int32_t ct3_sp_is_byte(const ct3_sp * sp, int32_t id) { return in_range(sp, id) && sp->processor.IsByte(id); }
int32_t ct3_sp_is_unused(const ct3_sp * sp, int32_t id) { return in_range(sp, id) && sp->processor.IsUnused(id); }

}  // extern "C"
