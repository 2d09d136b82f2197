#include "models/generate.h"

#include <algorithm>
#include <chrono>

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include "models/error.h"
#include "models/log.h"

namespace ct3 {

size_t utf8_complete_prefix(const std::string & text) {
    const size_t size = text.size();
    // Find the lead byte of the last character, at most 4 bytes back.
    for (size_t back = 1; back <= 4 && back <= size; ++back) {
        const auto byte = static_cast<unsigned char>(text[size - back]);
        if ((byte & 0xC0) == 0x80) continue;  // continuation byte
        size_t need;
        if (byte < 0x80) need = 1;
        else if ((byte & 0xE0) == 0xC0) need = 2;
        else if ((byte & 0xF0) == 0xE0) need = 3;
        else if ((byte & 0xF8) == 0xF0) need = 4;
        else return size;  // not a lead byte: invalid, nothing to wait for
        return back < need ? size - back : size;
    }
    return size;  // only continuation bytes: invalid, left alone
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Turns the growing id list into stream pieces. Pieces are not decoded one id at a time: SentencePiece
// drops the leading space of the first piece it decodes, and byte-fallback / byte-level BPE characters
// span several tokens. Instead (as vLLM does) a short window of ids is decoded twice, with and without
// the ids not yet committed, and the difference is the new text; the window's first ids are context
// that has already been committed. A window whose text is an incomplete character is kept open until
// the character completes. This costs O(window) per token; a tokenizer whose window decodes
// inconsistently switches the stream to re-decoding everything each step (O(n^2), always right).
class TextStream {
public:
    TextStream(const Tokenizer & tokenizer, const std::vector<std::string> & stop_strings)
        : tokenizer_(tokenizer), stop_strings_(stop_strings) {
        for (const auto & s : stop_strings_) max_stop_ = std::max(max_stop_, s.size());
    }

    // Re-decodes `ids`; returns the new piece that may be shown. Sets stopped() when a stop string appeared.
    std::string update(const std::vector<int32_t> & ids) {
        text_ = decode_text(ids);
        // A stop string can only start in text that was held back (or later), so search from there.
        const size_t search_from = emitted_ > max_stop_ ? emitted_ - max_stop_ : 0;
        size_t stop_at = std::string::npos;
        for (const auto & s : stop_strings_) stop_at = std::min(stop_at, text_.find(s, search_from));
        if (stop_at != std::string::npos) {
            stopped_ = true;
            text_.resize(stop_at);
            return take_until(stop_at);
        }
        return take_until(shown_limit());
    }

    // Whatever is still held back, once generation is over (an incomplete UTF-8 tail is dropped).
    std::string flush() {
        text_.resize(utf8_complete_prefix(text_));
        return take_until(text_.size());
    }

    bool stopped() const { return stopped_; }
    std::string final_text() const { return text_.substr(0, utf8_complete_prefix(text_)); }

private:
    static bool ends_clean(const std::string & text) {
        static const std::string replacement = "\xEF\xBF\xBD";
        return utf8_complete_prefix(text) == text.size() &&
               !(text.size() >= 3 && text.compare(text.size() - 3, 3, replacement) == 0);
    }

    std::string decode_range(const std::vector<int32_t> & ids, size_t begin, size_t end) const {
        return tokenizer_.decode(std::vector<int32_t>(ids.begin() + begin, ids.begin() + end), /*skip_special=*/true);
    }

    // The full decoded text of `ids`, computed from the committed text plus the open window.
    std::string decode_text(const std::vector<int32_t> & ids) {
        if (full_decode_) return tokenizer_.decode(ids, /*skip_special=*/true);
        const std::string before = decode_range(ids, prefix_, read_);
        const std::string after = decode_range(ids, prefix_, ids.size());
        if (after.compare(0, before.size(), before) != 0) {
            logger("model")->debug("tokenizer decodes windows inconsistently; streaming by full re-decoding");
            full_decode_ = true;
            return tokenizer_.decode(ids, /*skip_special=*/true);
        }
        std::string pending = after.substr(before.size());
        if (!pending.empty() && ends_clean(pending)) {
            committed_ += pending;
            pending.clear();
            prefix_ = read_;
            read_ = ids.size();
        }
        return committed_ + pending;
    }

    // How much of text_ may be shown now: complete UTF-8 characters only, no trailing U+FFFD (some
    // decoders emit it for a byte sequence that the next token completes), and nothing that could be
    // the beginning of a stop string.
    size_t shown_limit() const {
        size_t limit = utf8_complete_prefix(text_);
        static const std::string replacement = "\xEF\xBF\xBD";
        while (limit >= 3 && text_.compare(limit - 3, 3, replacement) == 0) limit -= 3;
        size_t held = limit;
        for (const auto & s : stop_strings_) {
            for (size_t len = std::min(s.size() - 1, limit); len > 0; --len) {
                if (text_.compare(limit - len, len, s, 0, len) == 0) {
                    held = std::min(held, limit - len);
                    break;
                }
            }
        }
        return held;
    }

    std::string take_until(size_t end) {
        if (end <= emitted_) return {};
        std::string piece = text_.substr(emitted_, end - emitted_);
        emitted_ = end;
        return piece;
    }

    const Tokenizer & tokenizer_;
    const std::vector<std::string> & stop_strings_;
    size_t max_stop_ = 0;
    std::string committed_;  // decoded text of ids[0, read_)
    size_t prefix_ = 0;      // the window starts here; ids[prefix_, read_) are context, already committed
    size_t read_ = 0;
    bool full_decode_ = false;
    std::string text_;
    size_t emitted_ = 0;
    bool stopped_ = false;
};

void validate(const CausalLM & model, const std::vector<int32_t> & prompt_ids, const GenerateParams & params) {
    CT3_CHECK(!prompt_ids.empty(), ErrorKind::invalid_argument,
              "generate: the prompt is empty (it needs at least one token, e.g. BOS)");
    const int64_t vocab = model.vocab_size();
    for (size_t i = 0; i < prompt_ids.size(); ++i) {
        CT3_CHECK(prompt_ids[i] >= 0 && prompt_ids[i] < vocab, ErrorKind::invalid_argument,
                  "generate: prompt token {} has id {}, outside the model's vocabulary [0, {})", i, prompt_ids[i], vocab);
    }
    const int64_t max_pos = model.max_position_embeddings();
    CT3_CHECK(max_pos <= 0 || static_cast<int64_t>(prompt_ids.size()) <= max_pos, ErrorKind::invalid_argument,
              "generate: the prompt has {} tokens but the model's max_position_embeddings is {}", prompt_ids.size(),
              max_pos);
    CT3_CHECK(params.max_new_tokens >= 0, ErrorKind::invalid_argument,
              "generate: max_new_tokens (-n) must be >= 0, got {}", params.max_new_tokens);
    for (size_t i = 0; i < params.stop_strings.size(); ++i) {
        CT3_CHECK(!params.stop_strings[i].empty(), ErrorKind::invalid_argument,
                  "generate: stop string {} (--stop) is empty", i);
    }
    params.sampling.validate();
}

std::vector<int32_t> eos_ids_of(const CausalLM & model, const Tokenizer & tokenizer, const GenerateParams & params) {
    if (!params.eos_ids.empty()) return params.eos_ids;
    std::vector<int32_t> ids = model.eos_token_ids();
    if (tokenizer.eos_id() >= 0) ids.push_back(tokenizer.eos_id());
    return ids;
}

// Logits row [vocab] of the last position of a [1, seq, vocab] forward, on the CPU.
at::Tensor last_row(const at::Tensor & logits, int64_t vocab) {
    CT3_CHECK(logits.dim() == 3 && logits.size(0) == 1 && logits.size(1) >= 1 && logits.size(2) == vocab,
              ErrorKind::internal, "generate: forward_tokens returned logits of shape {} (expected [1, seq, {}])",
              c10::str(logits.sizes()), vocab);
    return logits.select(0, 0).select(0, -1).to(at::kCPU, at::kFloat);
}

at::Tensor ids_tensor(const std::vector<int32_t> & ids, c10::Device device) {
    std::vector<int64_t> wide(ids.begin(), ids.end());
    return torch::tensor(wide, torch::kInt64).view({1, static_cast<int64_t>(wide.size())}).to(device);
}

}  // namespace

GenerateResult generate(CausalLM & model, const Tokenizer & tokenizer, const std::vector<int32_t> & prompt_ids,
                        const GenerateParams & params, const TokenCallback & on_token) {
    validate(model, prompt_ids, params);
    Sampler sampler(params.sampling);
    const std::vector<int32_t> eos_ids = eos_ids_of(model, tokenizer, params);
    const int64_t vocab = model.vocab_size();
    const int64_t max_pos = model.max_position_embeddings();
    auto log = logger("model");

    GenerateResult result;
    result.n_prompt_tokens = static_cast<int>(prompt_ids.size());
    if (params.max_new_tokens == 0) {
        result.finish_reason = "length";
        return result;
    }

    torch::NoGradGuard no_grad;
    c10::InferenceMode inference(params.inference_mode);

    auto start = Clock::now();
    KVCache cache = model.make_cache();
    at::Tensor row = last_row(model.forward_tokens(ids_tensor(prompt_ids, model.device()), &cache), vocab);
    result.prefill_ms = ms_since(start);
    start = Clock::now();

    std::vector<int32_t> context = prompt_ids;  // the repetition penalty looks at prompt + generated
    TextStream stream(tokenizer, params.stop_strings);
    bool cancelled = false;
    while (true) {
        if (static_cast<int>(result.ids.size()) >= params.max_new_tokens) {
            result.finish_reason = "length";
            break;
        }
        const int32_t id = sampler.sample(row, context);
        if (params.stop_at_eos && std::find(eos_ids.begin(), eos_ids.end(), id) != eos_ids.end()) {
            result.finish_reason = "eos";
            break;
        }
        result.ids.push_back(id);
        context.push_back(id);
        const std::string piece = stream.update(result.ids);
        const bool keep_going = on_token ? on_token(piece, id) : true;
        if (stream.stopped()) {
            result.finish_reason = "stop";
            break;
        }
        if (!keep_going) {
            result.finish_reason = "cancelled";
            cancelled = true;
            break;
        }
        if (static_cast<int>(result.ids.size()) >= params.max_new_tokens) {
            result.finish_reason = "length";  // checked here too, to skip a forward whose logits go unused
            break;
        }
        // The new token goes at position n_prompt + n_generated - 1, which must exist in the model.
        const int64_t position = static_cast<int64_t>(prompt_ids.size() + result.ids.size()) - 1;
        if (max_pos > 0 && position >= max_pos) {
            log->warn("generation stopped at the model's context length ({} tokens: {} prompt + {} new)", max_pos,
                      prompt_ids.size(), result.ids.size());
            result.finish_reason = "length";
            break;
        }
        row = last_row(model.forward_tokens(ids_tensor({id}, model.device()), &cache), vocab);
    }

    if (!cancelled && result.finish_reason != "stop") {
        const std::string rest = stream.flush();
        if (on_token && !rest.empty()) on_token(rest, -1);
    }
    result.text = stream.final_text();
    result.decode_ms = ms_since(start);
    const double seconds = result.decode_ms / 1000.0;
    log->debug("generated {} tokens ({}), prefill {} tokens in {:.1f} ms, decode {:.1f} tok/s", result.ids.size(),
               result.finish_reason, prompt_ids.size(), result.prefill_ms,
               seconds > 0 ? result.ids.size() / seconds : 0.0);
    return result;
}

}  // namespace ct3
