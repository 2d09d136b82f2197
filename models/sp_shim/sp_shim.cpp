// The C shim over libsentencepiece (see sp_shim.h for why it exists). Every entry point catches
// all exceptions: nothing may unwind across the C boundary into a dlopen'ing host.
#include "models/sp_shim/sp_shim.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

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

int32_t ct3_sp_train(const char * flags, char ** error) {
    if (error != nullptr) *error = nullptr;
    if (flags == nullptr) {
        set_error(error, "no flags given");
        return -1;
    }
    try {
        std::unordered_map<std::string, std::string> kwargs;
        bool seeded = false;
        unsigned int seed = 0;
        const std::string all(flags);
        for (size_t start = 0; start <= all.size();) {
            size_t end = all.find('\n', start);
            if (end == std::string::npos) end = all.size();
            std::string line = all.substr(start, end - start);
            start = end + 1;
            if (line.empty()) continue;
            if (line.compare(0, 2, "--") == 0) line.erase(0, 2);
            const size_t eq = line.find('=');
            if (eq == std::string::npos || eq == 0) {
                set_error(error, "flag '" + line + "' is not of the form --key=value");
                return -1;
            }
            std::string key = line.substr(0, eq), value = line.substr(eq + 1);
            if (key == "random_seed") {
                // Not a TrainerSpec field (spm_train handles it the same way, outside the spec).
                try {
                    seed = static_cast<unsigned int>(std::stoul(value));
                } catch (...) {
                    set_error(error, "--random_seed expects an unsigned integer, got '" + value + "'");
                    return -1;
                }
                seeded = true;
                continue;
            }
            if (!kwargs.emplace(std::move(key), std::move(value)).second) {
                set_error(error, "flag '" + line.substr(0, eq) + "' given twice");
                return -1;
            }
        }
        std::string message;
        bool ok = false;
        std::thread worker([&] {
            try {
                if (seeded) sentencepiece::SetRandomGeneratorSeed(seed);
                const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
                ok = status.ok();
                if (!ok) message = status.ToString();
            } catch (const std::exception & e) {
                message = e.what();
            } catch (...) {
                message = "unknown exception in the sentencepiece trainer";
            }
        });
        worker.join();
        if (!ok) {
            set_error(error, message);
            return -1;
        }
        return 0;
    } catch (const std::exception & e) {
        set_error(error, e.what());
    } catch (...) {
        set_error(error, "unknown exception in sentencepiece");
    }
    return -1;
}

}  // extern "C"
