// The evaluation tasks of CT3 (ct3_original.md §5): test items with the prompt each original
// harness builds, the gold answer, the held-out document for bits per byte, and for code the test
// program. Test splits only: they are what is evaluated, never trained on.
//   gsm8k      lm-eval 0.4.7: "Question: {q}\nAnswer:", greedy, 256 new tokens, stops
//   mawps, svamp, gsm8k_llm_adapters   LLM-Adapters test.json, raw instruction, 1024 new tokens, last number
//   mathqa, aqua                        LLM-Adapters test.json, option letter
//   mbpp       bigcode: '"""\n{text}\n{test_list[0]}\n"""\n', 512 tokens in all, stop words, asserts
//   humaneval  bigcode: prompt.strip(), 512 tokens in all, stop words, check(entry_point)
//   coqa       lm-eval 0.4.7 `coqa`: one item per story, the story and every earlier turn, ending
//              "Q: {last q}\n\nA:"; stop "\nQ:"; em / f1 against the last turn's answers (coqa=PATH:
//              Stanford's coqa-dev-v1.0.json or the Hugging Face EleutherAI/coqa rows as JSONL)
// Any other LLM-Adapters-format file (AddSub, SingleEq, MultiArith, ...) loads as NAME=PATH with
// numeric scoring, or NAME=PATH:letter for multiple choice.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "eval/sandbox.h"

namespace ct3::eval {

enum class Scoring { gsm8k, number, option_letter, code, coqa };

struct TaskSpec {
    std::string name;
    Scoring scoring = Scoring::number;
    int max_new_tokens = 256;
    bool max_tokens_total = false;  // bigcode: the budget counts prompt + completion
    std::vector<std::string> stop_strings;
    std::filesystem::path source;
    // How the original harness applies --limit: LLM-Adapters runs random.seed(42); shuffle; [:limit],
    // lm-eval and the bigcode harness take the first `limit` documents.
    bool limit_shuffles = false;
};

struct EvalItem {
    std::string id;          // "<task>/<row>" or the dataset's own id (HumanEval/0)
    std::string prompt;
    std::string gold;        // the answer (gsm8k: text after ####; letter; number as text; code: "")
    std::string document;    // the held-out text for bits per byte (question + solution)
    std::string test_code;   // code tasks: appended after the completion to check it
    std::vector<std::string> golds;  // coqa: every valid answer of the last turn (gold = the first)
};

struct Task {
    TaskSpec spec;
    std::vector<EvalItem> items;
};

// The names load_task knows without a path.
std::vector<std::string> builtin_tasks();

// `spec`: a builtin name, or NAME=PATH[:letter]. Throws ct3::Error naming the file, record and field.
Task load_task(const std::string & spec, const std::filesystem::path & data_root);

struct ItemScore {
    std::string extracted;           // what the scorer read from the output
    bool correct = false;
    std::string extracted_alt;       // gsm8k: flexible-extract; option letters: the original's
    bool correct_alt = false;
    SandboxResult execution;         // code tasks
    double em = 0, f1 = 0;           // coqa (em may be fractional: lm-eval's leave-one-out mean)
};

enum class LimitSample {
    original,  // as the task's original harness (TaskSpec::limit_shuffles)
    shuffle,   // Python's random.seed(seed); random.shuffle for every task
    first,     // the first `limit` items for every task
};
LimitSample parse_limit_sample(const std::string & name);  // throws naming --limit_sample

// The item indices a run evaluates, in evaluation order: all items, or `limit` of them (> 0) chosen
// as `how` says, then every `shards`-th from position `shard` (several processes on one device).
// A larger limit keeps the smaller one's items, so a run can be extended by resuming.
std::vector<size_t> select_items(const TaskSpec & spec, size_t count, int limit, LimitSample how, uint64_t seed,
                                 int shard = 0, int shards = 1);

// Scores one generated output (new text only).
ItemScore score_output(const Task & task, const EvalItem & item, const std::string & output,
                       const SandboxLimits & limits = {});

}  // namespace ct3::eval
