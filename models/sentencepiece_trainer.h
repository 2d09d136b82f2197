// Training SentencePiece tokenizers (BPE or unigram) in-process, through sentencepiece's trainer
// library inside the dlopen'ed shim (see tokenizer_sentencepiece.h for why it is a shim).
//
// Defaults follow Llama's tokenizer.model: byte fallback, identity normalisation, digits split,
// unk/bos/eos = 0/1/2, no pad. Whitespace is kept exactly (remove_extra_whitespaces = false and
// whitespace-only pieces allowed) so code indentation survives and becomes cheap pieces ("▁▁▁▁").
//
// Newlines: sentencepiece reads its input one sentence per line, so the training text is the
// documents split at '\n' (write_training_text in models/pretrain/token_shards.h). No piece ever
// contains '\n'; when a whole multi-line document is encoded, each '\n' falls back to the byte
// piece <0x0A> (as in Llama's tokenizer) and decode() restores it, so encode/decode round-trips
// multi-line, indented code (tests/pretrain_tokenizer_test.cpp checks it).
//
// Determinism: with the same inputs and options, two trainings write byte-identical .model files,
// also when sentencepiece samples input_sentence_size lines of a larger input (tested). random_seed
// is handed to sentencepiece's SetRandomGeneratorSeed (and the shim trains on a fresh thread, as
// newer versions keep a thread_local generator), but with Debian's 0.1.97 the seed was observed not
// to change the sample: sampling is deterministic, yet another seed does not draw another sample.
// The .model embeds the trainer options, including the input paths, model_prefix and num_threads,
// so identical bytes also need identical paths and thread counts.
//
// Logging: sentencepiece's own log (std::cerr) is switched off (minloglevel 3). Loaded with
// RTLD_DEEPBIND, its std::cerr binds to libstdc++'s uninitialised copy of the stream (the program's
// copy-relocated std::cerr is the initialised one), and the first INFO line crashes the process
// (seen in the tests). Errors still arrive: as the trainer's status, in the ct3::Error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ct3 {

struct SentencePieceTrainOptions {
    std::vector<std::filesystem::path> input_files;  // plain text, one sentence (document line) per line
    std::filesystem::path model_prefix;              // writes <prefix>.model and <prefix>.vocab
    int vocab_size = 8192;
    std::string model_type = "bpe";                  // "bpe" or "unigram"
    bool byte_fallback = true;
    double character_coverage = 0.9995;
    int64_t input_sentence_size = 2'000'000;         // lines sampled (seeded) when the input has more
    uint32_t random_seed = 1;                        // sentencepiece reserves 0xFFFFFFFF (= random)
    int num_threads = 0;                             // 0 = std::thread::hardware_concurrency()
    int max_sentence_length = 16384;                 // bytes; longer lines are skipped by the trainer
    bool split_digits = true;
    bool allow_whitespace_only_pieces = true;
    bool remove_extra_whitespaces = false;           // keep code indentation
    bool add_dummy_prefix = true;                    // Llama: "Hello" is encoded as "▁Hello"
    std::string normalization_rule_name = "identity";
    std::vector<std::string> user_defined_symbols;   // none by default
    int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};

// Trains and writes <model_prefix>.model / .vocab (the folder is created). Throws ct3::Error naming
// the option for invalid options, the file for missing inputs, and carrying the trainer's message
// when sentencepiece fails (e.g. a vocab_size too large for the input); ErrorKind::unavailable
// when the shim cannot be loaded.
void train_sentencepiece(const SentencePieceTrainOptions & options);

// The flag text handed to the shim (one "--key=value" per line); exposed for logging and tests.
std::string sentencepiece_train_flags(const SentencePieceTrainOptions & options);

}  // namespace ct3
