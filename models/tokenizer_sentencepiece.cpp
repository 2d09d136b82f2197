#include "models/tokenizer_sentencepiece.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "models/error.h"
#include "models/log.h"
#include "models/sp_shim/sp_shim.h"

// The sanitizer runtimes (ASan, TSan) refuse RTLD_DEEPBIND (it would bypass their malloc
// interposition), so sanitizer builds load the shim with RTLD_LOCAL only. Sentencepiece's protobuf
// symbols may then bind to libtorch's libprotobuf if that is already loaded; see the SentencePiece
// tests for how sanitizer builds cope.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CT3_SP_NO_DEEPBIND 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CT3_SP_NO_DEEPBIND 1
#endif
#endif

namespace fs = std::filesystem;

namespace ct3 {

namespace {

// True when a sanitizer runtime is in the process. Checked at run time as well because the models
// library may be built without instrumentation and linked into a sanitized program (the
// retrieval-scoped sanitizer builds of scripts/sanitize.sh).
bool sanitizer_runtime_present() {
#ifdef CT3_SP_NO_DEEPBIND
    return true;
#else
    static const bool present = dlsym(RTLD_DEFAULT, "__asan_init") != nullptr ||
                                dlsym(RTLD_DEFAULT, "__tsan_init") != nullptr;
    return present;
#endif
}

}  // namespace

//
// shim loading
//

namespace {

struct ShimApi {
    std::string path;
    decltype(&ct3_sp_abi_version) abi_version = nullptr;
    decltype(&ct3_sp_load) load = nullptr;
    decltype(&ct3_sp_free) free = nullptr;
    decltype(&ct3_sp_encode) encode = nullptr;
    decltype(&ct3_sp_free_ids) free_ids = nullptr;
    decltype(&ct3_sp_decode) decode = nullptr;
    decltype(&ct3_sp_free_string) free_string = nullptr;
    decltype(&ct3_sp_vocab_size) vocab_size = nullptr;
    decltype(&ct3_sp_id_to_piece) id_to_piece = nullptr;
    decltype(&ct3_sp_piece_to_id) piece_to_id = nullptr;
    decltype(&ct3_sp_bos_id) bos_id = nullptr;
    decltype(&ct3_sp_eos_id) eos_id = nullptr;
    decltype(&ct3_sp_pad_id) pad_id = nullptr;
    decltype(&ct3_sp_unk_id) unk_id = nullptr;
    decltype(&ct3_sp_is_control) is_control = nullptr;
    decltype(&ct3_sp_is_unknown) is_unknown = nullptr;
    decltype(&ct3_sp_is_byte) is_byte = nullptr;
    decltype(&ct3_sp_train) train = nullptr;
};

std::vector<std::string> shim_candidates() {
    std::vector<std::string> out;
    if (const char * env = std::getenv("CT3_SP_SHIM"); env != nullptr && *env != '\0') {
        out.emplace_back(env);  // an explicit choice is the only candidate: no silent fallback
        return out;
    }
#ifdef CT3_SP_SHIM_BUILD_PATH
    out.emplace_back(CT3_SP_SHIM_BUILD_PATH);
#endif
#ifdef CT3_SP_SHIM_INSTALL_PATH
    out.emplace_back(CT3_SP_SHIM_INSTALL_PATH);
#endif
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path dir = exe.parent_path();
        for (const fs::path & p : {dir / ".." / "lib" / "ct3", dir / ".." / "lib", dir}) {
            out.push_back((p / "libct3_sp_shim.so").lexically_normal().string());
        }
    }
    return out;
}

template <typename Fn>
bool resolve(void * lib, const char * name, Fn & fn) {
    fn = reinterpret_cast<Fn>(dlsym(lib, name));
    return fn != nullptr;
}

// Loads the first usable candidate; returns an empty string on success, else why each one failed.
std::string load_shim(ShimApi & api) {
    const int flags = sanitizer_runtime_present() ? RTLD_NOW | RTLD_LOCAL : RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
    std::string errors;
    for (const std::string & candidate : shim_candidates()) {
        std::error_code ec;
        if (!fs::exists(candidate, ec)) {
            errors += fmt::format("\n  {}: not found", candidate);
            continue;
        }
        void * lib = dlopen(candidate.c_str(), flags);
        if (lib == nullptr) {
            const char * why = dlerror();
            errors += fmt::format("\n  {}: {}", candidate, why != nullptr ? why : "dlopen failed");
            continue;
        }
        bool ok = resolve(lib, "ct3_sp_abi_version", api.abi_version);
        if (ok && api.abi_version() != CT3_SP_SHIM_ABI_VERSION) {
            errors += fmt::format("\n  {}: ABI version {} (expected {})", candidate, api.abi_version(),
                                  CT3_SP_SHIM_ABI_VERSION);
            dlclose(lib);
            continue;
        }
        ok = ok && resolve(lib, "ct3_sp_load", api.load) && resolve(lib, "ct3_sp_free", api.free) &&
             resolve(lib, "ct3_sp_encode", api.encode) && resolve(lib, "ct3_sp_free_ids", api.free_ids) &&
             resolve(lib, "ct3_sp_decode", api.decode) && resolve(lib, "ct3_sp_free_string", api.free_string) &&
             resolve(lib, "ct3_sp_vocab_size", api.vocab_size) && resolve(lib, "ct3_sp_id_to_piece", api.id_to_piece) &&
             resolve(lib, "ct3_sp_piece_to_id", api.piece_to_id) && resolve(lib, "ct3_sp_bos_id", api.bos_id) &&
             resolve(lib, "ct3_sp_eos_id", api.eos_id) && resolve(lib, "ct3_sp_pad_id", api.pad_id) &&
             resolve(lib, "ct3_sp_unk_id", api.unk_id) && resolve(lib, "ct3_sp_is_control", api.is_control) &&
             resolve(lib, "ct3_sp_is_unknown", api.is_unknown) && resolve(lib, "ct3_sp_is_byte", api.is_byte) &&
             resolve(lib, "ct3_sp_train", api.train);
        if (!ok) {
            errors += fmt::format("\n  {}: missing ct3_sp_* symbols (not a ct3 sentencepiece shim)", candidate);
            dlclose(lib);
            continue;
        }
        api.path = candidate;  // the library stays loaded for the life of the process
        logger("model")->debug("loaded sentencepiece shim {}", candidate);
        return {};
    }
    return errors.empty() ? std::string("\n  (no candidate paths)") : errors;
}

const ShimApi & shim() {
    static std::once_flag once;
    static ShimApi api;
    static std::string error;
    std::call_once(once, [] { error = load_shim(api); });
    if (!error.empty()) {
        fail_hint(ErrorKind::unavailable,
                  "build the ct3_sp_shim target (needs libsentencepiece-dev) or set CT3_SP_SHIM to libct3_sp_shim.so",
                  "cannot load the sentencepiece shim library; tried:{}", error);
    }
    return api;
}

// Takes ownership of a shim-allocated error message.
std::string take_error(char * error) {
    std::string out = error != nullptr ? error : "unknown error";
    if (error != nullptr) shim().free_string(error);
    return out;
}

// "<0x0A>" -> 0x0A; -1 when the piece is not of that form.
int parse_byte_piece(const std::string & piece) {
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(piece[3]), lo = hex(piece[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_meta_space(const std::string & piece) {
    static const std::string meta = "\xE2\x96\x81";  // U+2581, sentencepiece's word-boundary marker
    std::string out;
    out.reserve(piece.size());
    for (size_t i = 0; i < piece.size();) {
        if (piece.compare(i, meta.size(), meta) == 0) {
            out += ' ';
            i += meta.size();
        } else {
            out += piece[i++];
        }
    }
    return out;
}

}  // namespace

std::string sentencepiece_shim_path() { return shim().path; }

bool sentencepiece_shim_isolated() { return !sanitizer_runtime_present(); }

void sentencepiece_shim_train(const std::string & flags) {
    static std::mutex mutex;  // the shim's trainer keeps process-global state (seed, log level)
    const ShimApi & api = shim();
    const std::lock_guard<std::mutex> lock(mutex);
    char * error = nullptr;
    if (api.train(flags.c_str(), &error) != 0) {
        fail(ErrorKind::invalid_argument, "sentencepiece training failed: {}", take_error(error));
    }
}

//
// SentencePieceTokenizer
//

SentencePieceTokenizer::SentencePieceTokenizer(const fs::path & model_file) : path_(model_file) {
    const ShimApi & api = shim();
    std::error_code ec;
    CT3_CHECK(fs::is_regular_file(model_file, ec), ErrorKind::not_found, "sentencepiece model '{}' not found",
              model_file.string());
    char * error = nullptr;
    handle_ = {api.load(model_file.c_str(), &error), api.free};
    if (handle_ == nullptr) {
        fail_hint(ErrorKind::bad_format,
                  sentencepiece_shim_isolated()
                      ? "expected a SentencePiece .model file (e.g. tokenizer.model)"
                      : "this is a sanitizer (ASan/TSan) build, where sentencepiece cannot be isolated from libtorch's "
                        "protobuf; use a build without sanitizers for SentencePiece models",
                  "cannot load sentencepiece model '{}': {}", model_file.string(), take_error(error));
    }
    const int32_t n = api.vocab_size(handle_.get());
    texts_.resize(static_cast<size_t>(n));
    special_.assign(static_cast<size_t>(n), 0);
    bos_id_ = api.bos_id(handle_.get());
    eos_id_ = api.eos_id(handle_.get());
    pad_id_ = api.pad_id(handle_.get());
    unk_id_ = api.unk_id(handle_.get());
    for (int32_t id = 0; id < n; ++id) {
        const std::string piece = raw_piece(id);
        if (api.is_control(handle_.get(), id)) {
            special_[id] = 1;  // contributes nothing to a text stream
        } else if (api.is_unknown(handle_.get(), id)) {
            special_[id] = 1;
            texts_[id] = decode_plain(&id, 1);  // sentencepiece's unknown surface (" ⁇ ")
        } else if (const int byte = api.is_byte(handle_.get(), id) ? parse_byte_piece(piece) : -1; byte >= 0) {
            texts_[id] = std::string(1, static_cast<char>(byte));
        } else {
            texts_[id] = replace_meta_space(piece);
        }
    }
    logger("model")->debug("sentencepiece tokenizer {}: {} pieces, bos {}, eos {}", model_file.string(), n, bos_id_,
                           eos_id_);
}

void SentencePieceTokenizer::check_id(int32_t id) const {
    CT3_CHECK(id >= 0 && static_cast<size_t>(id) < texts_.size(), ErrorKind::invalid_argument,
              "token id {} is out of range for sentencepiece model '{}' ({} pieces)", id, path_.string(),
              texts_.size());
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string & text, const EncodeOptions & options) const {
    int32_t * ids = nullptr;
    size_t n = 0;
    char * error = nullptr;
    if (shim().encode(handle_.get(), text.data(), text.size(), &ids, &n, &error) != 0) {
        fail(ErrorKind::invalid_argument, "sentencepiece model '{}' cannot encode the text: {}", path_.string(),
             take_error(error));
    }
    std::vector<int32_t> out;
    out.reserve(n + 1);
    if (options.add_special_tokens && bos_id_ >= 0) out.push_back(bos_id_);
    out.insert(out.end(), ids, ids + n);
    shim().free_ids(ids);
    if (options.max_length > 0 && out.size() > options.max_length) out.resize(options.max_length);
    return out;
}

std::string SentencePieceTokenizer::decode_plain(const int32_t * ids, size_t n) const {
    char * text = nullptr;
    size_t len = 0;
    char * error = nullptr;
    if (shim().decode(handle_.get(), ids, n, &text, &len, &error) != 0) {
        fail(ErrorKind::invalid_argument, "sentencepiece model '{}' cannot decode the ids: {}", path_.string(),
             take_error(error));
    }
    std::string out(text, len);
    shim().free_string(text);
    return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t> & ids, bool skip_special) const {
    for (int32_t id : ids) check_id(id);
    if (skip_special) {
        std::vector<int32_t> kept;
        kept.reserve(ids.size());
        for (int32_t id : ids) {
            if (!special_[id]) kept.push_back(id);
        }
        return decode_plain(kept.data(), kept.size());
    }
    // sentencepiece drops control pieces silently: decode the runs between them and write each
    // control piece verbatim, as HF does with skip_special_tokens=False.
    std::string out;
    size_t start = 0;
    for (size_t i = 0; i <= ids.size(); ++i) {
        const bool control = i < ids.size() && special_[ids[i]] && ids[i] != unk_id_;
        if (i == ids.size() || control) {
            if (i > start) out += decode_plain(ids.data() + start, i - start);
            if (control) out += raw_piece(ids[i]);
            start = i + 1;
        }
    }
    return out;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
    check_id(id);
    return texts_[id];
}

std::string SentencePieceTokenizer::raw_piece(int32_t id) const {
    size_t len = 0;
    const char * piece = shim().id_to_piece(handle_.get(), id, &len);
    CT3_CHECK(piece != nullptr, ErrorKind::invalid_argument,
              "token id {} is out of range for sentencepiece model '{}'", id, path_.string());
    return std::string(piece, len);
}

std::optional<int32_t> SentencePieceTokenizer::piece_to_id(const std::string & piece) const {
    const int32_t id = shim().piece_to_id(handle_.get(), piece.data(), piece.size());
    if (id < 0) return std::nullopt;
    return id;
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id] != 0;
}

}  // namespace ct3
