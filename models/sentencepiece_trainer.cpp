#include "models/sentencepiece_trainer.h"

#include <algorithm>
#include <thread>

#include "models/error.h"
#include "models/log.h"
#include "models/tokenizer_sentencepiece.h"

namespace fs = std::filesystem;

namespace ct3 {

namespace {

// The shim's flags are newline-separated and sentencepiece splits `input` and
// `user_defined_symbols` at commas: values holding those characters cannot be passed through.
void check_flag_value(const std::string & what, const std::string & value, bool comma_separated) {
    CT3_CHECK(value.find('\n') == std::string::npos && value.find('\r') == std::string::npos,
              ErrorKind::invalid_argument, "sentencepiece training: {} '{}' contains a line break", what, value);
    CT3_CHECK(!comma_separated || value.find(',') == std::string::npos, ErrorKind::invalid_argument,
              "sentencepiece training: {} '{}' contains a comma (sentencepiece splits this list at commas)", what,
              value);
}

const char * flag_bool(bool b) { return b ? "true" : "false"; }

}  // namespace

std::string sentencepiece_train_flags(const SentencePieceTrainOptions & o) {
    std::string inputs;
    for (const fs::path & p : o.input_files) {
        check_flag_value("input file", p.string(), true);
        inputs += (inputs.empty() ? "" : ",") + p.string();
    }
    std::string symbols;
    for (const std::string & s : o.user_defined_symbols) {
        CT3_CHECK(!s.empty(), ErrorKind::invalid_argument, "sentencepiece training: an empty user_defined_symbol");
        check_flag_value("user_defined_symbol", s, true);
        symbols += (symbols.empty() ? "" : ",") + s;
    }
    check_flag_value("model_prefix", o.model_prefix.string(), false);
    check_flag_value("model_type", o.model_type, false);
    check_flag_value("normalization_rule_name", o.normalization_rule_name, false);
    const int threads = o.num_threads > 0 ? o.num_threads : std::max(1u, std::thread::hardware_concurrency());

    std::string f;
    auto add = [&f](const char * key, const std::string & value) { f += fmt::format("--{}={}\n", key, value); };
    add("input", inputs);
    add("model_prefix", o.model_prefix.string());
    add("vocab_size", std::to_string(o.vocab_size));
    add("model_type", o.model_type);
    add("byte_fallback", flag_bool(o.byte_fallback));
    add("character_coverage", fmt::format("{}", o.character_coverage));
    add("input_sentence_size", std::to_string(o.input_sentence_size));
    add("shuffle_input_sentence", "true");
    add("random_seed", std::to_string(o.random_seed));
    add("num_threads", std::to_string(threads));
    add("max_sentence_length", std::to_string(o.max_sentence_length));
    add("split_digits", flag_bool(o.split_digits));
    add("allow_whitespace_only_pieces", flag_bool(o.allow_whitespace_only_pieces));
    add("remove_extra_whitespaces", flag_bool(o.remove_extra_whitespaces));
    add("add_dummy_prefix", flag_bool(o.add_dummy_prefix));
    add("normalization_rule_name", o.normalization_rule_name);
    if (!symbols.empty()) add("user_defined_symbols", symbols);
    add("unk_id", std::to_string(o.unk_id));
    add("bos_id", std::to_string(o.bos_id));
    add("eos_id", std::to_string(o.eos_id));
    add("pad_id", std::to_string(o.pad_id));
    add("minloglevel", "3");  // silent: its std::cerr crashes under RTLD_DEEPBIND (see the header)
    return f;
}

void train_sentencepiece(const SentencePieceTrainOptions & o) {
    CT3_CHECK(!o.input_files.empty(), ErrorKind::invalid_argument, "sentencepiece training: no input_files given");
    for (const fs::path & p : o.input_files) {
        std::error_code ec;
        CT3_CHECK(fs::is_regular_file(p, ec), ErrorKind::not_found, "sentencepiece training: input file '{}' not found",
                  p.string());
    }
    CT3_CHECK(!o.model_prefix.empty() && o.model_prefix.has_filename(), ErrorKind::invalid_argument,
              "sentencepiece training: model_prefix '{}' must name a file prefix (e.g. out/tokenizer)",
              o.model_prefix.string());
    CT3_CHECK(o.model_type == "bpe" || o.model_type == "unigram", ErrorKind::invalid_argument,
              "sentencepiece training: model_type '{}' (expected 'bpe' or 'unigram')", o.model_type);
    CT3_CHECK(o.vocab_size > 0, ErrorKind::invalid_argument, "sentencepiece training: vocab_size {} (expected > 0)",
              o.vocab_size);
    CT3_CHECK(!o.byte_fallback || o.vocab_size > 256 + 3, ErrorKind::invalid_argument,
              "sentencepiece training: vocab_size {} is too small for byte_fallback (256 byte pieces + specials)",
              o.vocab_size);
    CT3_CHECK(o.character_coverage > 0.0 && o.character_coverage <= 1.0, ErrorKind::invalid_argument,
              "sentencepiece training: character_coverage {} (expected in (0, 1])", o.character_coverage);
    CT3_CHECK(o.input_sentence_size >= 0, ErrorKind::invalid_argument,
              "sentencepiece training: input_sentence_size {} (expected >= 0; 0 = all lines)", o.input_sentence_size);
    CT3_CHECK(o.random_seed != 0xFFFFFFFFu, ErrorKind::invalid_argument,
              "sentencepiece training: random_seed 4294967295 is reserved by sentencepiece (it means: random)");
    CT3_CHECK(o.max_sentence_length > 0, ErrorKind::invalid_argument,
              "sentencepiece training: max_sentence_length {} (expected > 0)", o.max_sentence_length);
    const std::string flags = sentencepiece_train_flags(o);

    const fs::path dir = o.model_prefix.parent_path();
    if (!dir.empty()) {
        std::error_code ec;
        fs::create_directories(dir, ec);
        CT3_CHECK(!ec, ErrorKind::io, "sentencepiece training: cannot create folder '{}': {}", dir.string(),
                  ec.message());
    }
    logger("model")->info("training a {} sentencepiece model ({} pieces) from {} file(s) -> {}.model", o.model_type,
                          o.vocab_size, o.input_files.size(), o.model_prefix.string());
    logger("model")->debug("sentencepiece trainer flags:\n{}", flags);
    sentencepiece_shim_train(flags);
    std::error_code ec;
    CT3_CHECK(fs::is_regular_file(o.model_prefix.string() + ".model", ec), ErrorKind::io,
              "sentencepiece training reported success but wrote no '{}.model'", o.model_prefix.string());
}

}  // namespace ct3
