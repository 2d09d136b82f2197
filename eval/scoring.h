// Answer extraction and scoring of the CT3 evaluation tasks, each exactly as the harness the
// original used (ct3_original.md §5), so numbers compare with the papers':
//   GSM8K      lm-eval-harness 0.4.7 `gsm8k`: exact match after the "strict-match" and
//              "flexible-extract" filters, with its ignore-case/regex normalisation.
//   MAWPS etc. LLM-Adapters: the last number of the response, correct within 1e-3.
//   MathQA/AQuA LLM-Adapters' option letter (the first A-E character anywhere: reads "Answer" as A)
//              and a corrected extraction; both are reported.
//   CoQA       lm-eval `coqa`: SQuAD-normalised em / f1, max over gold answers with
//              leave-one-out averaging when there are several.
//   MBPP/HumanEval the bigcode harness' truncation of a completion at its first stop word.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ct3::eval {

// Python's str.strip(): leading and trailing whitespace removed.
std::string strip(const std::string & s);

// lm-eval's "[invalid]" when a filter finds nothing.
extern const char * const kInvalidAnswer;

// GSM8K gold: the text after the last "####" of the dataset's answer, trimmed.
std::string gsm8k_gold(const std::string & answer_field);
// strict-match: the first "#### (-?[0-9.,]+)" group; flexible-extract: the last "(-?[$0-9.,]{2,})|(-?[0-9]+)" match.
std::string gsm8k_strict(const std::string & output);
std::string gsm8k_flexible(const std::string & output);
// lm-eval exact_match with ignore_case and regexes_to_ignore [",", "\$", "(?s).*#### ", "\.$"].
bool gsm8k_exact_match(const std::string & prediction, const std::string & gold);

// LLM-Adapters numeric answer: commas removed, last match of -?\d+\.?\d*; nullopt when none
// (the original uses infinity, which is never correct).
std::optional<double> last_number(const std::string & output);
bool number_correct(const std::optional<double> & prediction, double label);

// LLM-Adapters option letter: the first of A-E anywhere in the stripped response ("" when none).
std::string option_letter_original(const std::string & output);
// The corrected extraction: the last explicit "answer is (X)" / "Answer: X" / "option X"; otherwise
// the first standalone letter A-E ("(B)", "C)", "D." or alone), skipping the article "A" before a
// lower-case word. "" when none.
std::string option_letter(const std::string & output);

// SQuAD normalisation: lower case, punctuation removed, articles (a, an, the) removed, whitespace collapsed.
std::string squad_normalize(const std::string & text);
double squad_em(const std::string & prediction, const std::string & gold);
double squad_f1(const std::string & prediction, const std::string & gold);
struct EmF1 {
    double em = 0, f1 = 0;
};
// lm-eval coqa: with one gold, the score against it; with several, the mean over i of the max over
// the golds other than i.
EmF1 coqa_scores(const std::string & prediction, const std::vector<std::string> & golds);
// The CoQA prediction: the first line of the stripped output.
std::string coqa_prediction(const std::string & output);

// The completion cut before the first occurrence of any stop word (bigcode post-processing).
std::string truncate_at_stop_words(const std::string & completion, const std::vector<std::string> & stop_words);
const std::vector<std::string> & mbpp_stop_words();
const std::vector<std::string> & humaneval_stop_words();

}  // namespace ct3::eval
