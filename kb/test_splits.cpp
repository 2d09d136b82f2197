// refuse_test_split: a KB that contains evaluation items makes every TTT score meaningless (the
// retriever would hand the model the test question with its answer), so evaluation files are
// refused twice over: by content hash, which catches renamed copies of the files in ../shared/data,
// and by file name, which catches other copies and user files that follow the usual naming.
#include <algorithm>
#include <cctype>

#include "kb/datasets.h"
#include "models/error.h"
#include "models/sha256.h"

namespace ct3::kb {

namespace {

struct EvalFile {
    const char * sha256;
    const char * path;  // relative to ../shared/data
    const char * hint;
};

// sha256 of every EVAL file in ../shared/data (PROVENANCE.md), computed with sha256sum.
const EvalFile kEvalFiles[] = {
    {"3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", "gsm8k/test.jsonl", "use gsm8k/train.jsonl"},
    {"de677f5f0139340009eb01f17c0db781b4161912cd1f4efa77292f2fcf3478ee", "llm_adapters/dataset/AQuA/test.json", ""},
    {"ffed015784f738f317c5603177861d044c4fc94e09211d78b25e96d46c656e2c", "llm_adapters/dataset/SVAMP/test.json", ""},
    {"2cc616a1e0b23ea1df29370476365cde71c4e0aa823fb06cc194c5a8a9381abe", "llm_adapters/dataset/gsm8k/test.json",
     "use gsm8k/train.jsonl"},
    {"58715cb7aaccc7f3f2994586073800a57a3e44f77d22e62bee7fd7ff8315172c", "llm_adapters/dataset/mathqa/test.json", ""},
    {"c1a708979cbf2b3df9ac4020baacf3e8e73fcf089e1de7dd1b305b810bfaa15f", "llm_adapters/dataset/mawps/test.json",
     "use llm_adapters/dataset/mawps/trainset.json"},
    {"79273daea844d23ab308107a6aba32c7c65a21133d59ee3e1c5c571301d11ce4", "llm_adapters/dataset/AQuA/AQuA.json", ""},
    {"33386f96725389c5d78e159a48a2dac7ab4b4fbce23c7d77b7a4951da9fbcd30", "llm_adapters/dataset/SVAMP/SVAMP.json", ""},
    {"c994d77e5f47cb7ef356839a76a320306fbef6a7df8e31c727b7b639462d98ee", "llm_adapters/dataset/gsm8k/gsm8k.json",
     "use gsm8k/train.jsonl"},
    {"2de996509d7ee519fcd35d0ffc71892b33f92684e8d716c29b1e71ccfeb0f28b", "llm_adapters/dataset/mawps/testset.json",
     "use llm_adapters/dataset/mawps/trainset.json"},
    {"9bcaa67d5c2943e95eb9d9127e844f0551a77ac910c664aa45a4ebd75d239bd9", "mbpp/mbpp_test.jsonl",
     "use mbpp/mbpp_train.jsonl"},
    {"ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9", "mbpp/sanitized-mbpp.json",
     "use mbpp/mbpp_train.jsonl"},
    {"143559fa164408d45cab058238471288b0e447507ce55db3057c56113d9dccb4", "mbpp/mbpp.jsonl",
     "mbpp.jsonl holds all 974 tasks including the test split (task_id 11-510); use mbpp/mbpp_train.jsonl"},
    {"1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2", "humaneval/HumanEval.jsonl", ""},
    {"b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef", "humaneval/HumanEval.jsonl.gz", ""},
};

// Files larger than this are not hashed (none of the evaluation files comes close; hashing a
// multi-GB training dump on every resolve would cost more than it protects).
constexpr uintmax_t kMaxHashedBytes = uintmax_t(64) << 20;

bool ends_with(const std::string & s, const std::string & suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string & s, const std::string & prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The evaluation naming conventions, case-insensitive. CoQA's evaluation split ships as
// coqa-dev-v1.0.json (Hugging Face calls it "validation"), so those names are refused as well.
bool is_test_name(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (name == "test.json" || name == "test.jsonl" || name == "testset.json" || name == "sanitized-mbpp.json")
        return true;
    if (ends_with(name, "_test.json") || ends_with(name, "_test.jsonl")) return true;
    if (starts_with(name, "humaneval") && (ends_with(name, ".jsonl") || ends_with(name, ".jsonl.gz"))) return true;
    if (starts_with(name, "coqa") && (name.find("dev") != std::string::npos || name.find("validation") != std::string::npos))
        return true;
    return false;
}

}  // namespace

std::string refuse_test_split(const std::filesystem::path & path) {
    const std::string name = path.filename().string();
    if (is_test_name(name)) {
        fail_hint(ErrorKind::invalid_argument,
                  "evaluation files (test.json, *_test.jsonl, testset.json, HumanEval*, sanitized-mbpp.json, "
                  "coqa dev/validation) are refused by name; use the training split",
                  "'{}' is an evaluation split (by its file name) and must never enter a KB", path.string());
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return {};
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec || size >= kMaxHashedBytes) return {};
    const std::string digest = sha256_file(path);
    for (const auto & eval : kEvalFiles) {
        if (digest != eval.sha256) continue;
        std::string hint = eval.hint;
        if (hint.empty()) hint = "evaluation sets have no place in a KB; use a training split";
        fail_hint(ErrorKind::invalid_argument, hint,
                  "'{}' is an evaluation split (its sha256 matches ../shared/data/{}) and must never enter a KB",
                  path.string(), eval.path);
    }
    return digest;
}

}  // namespace ct3::kb
