// Answer extraction and scoring of every CT3 task against hand-written cases, including the
// traps the issue names (an option letter read from "Answer", numbers with $ and commas).
#include <gtest/gtest.h>

#include "eval/scoring.h"

using namespace ct3::eval;

TEST(Gsm8k, GoldIsTheTextAfterTheLastMarker) {
    EXPECT_EQ(gsm8k_gold("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"), "72");
    EXPECT_EQ(gsm8k_gold("a #### 1 #### 1,000"), "1,000");
}

TEST(Gsm8k, StrictMatchNeedsTheMarker) {
    EXPECT_EQ(gsm8k_strict("She sold 72 clips.\n#### 72"), "72");
    EXPECT_EQ(gsm8k_strict("#### -3.5 and later #### 9"), "-3.5");  // the first marker
    EXPECT_EQ(gsm8k_strict("The answer is 72."), kInvalidAnswer);
}

TEST(Gsm8k, FlexibleExtractTakesTheLastNumber) {
    EXPECT_EQ(gsm8k_flexible("Natalia sold 48 + 24 = 72 clips."), "72");
    EXPECT_EQ(gsm8k_flexible("So she earns $1,000.\n"), "$1,000.");
    EXPECT_EQ(gsm8k_flexible("x = 5"), "5");
    EXPECT_EQ(gsm8k_flexible("no digits"), kInvalidAnswer);
}

TEST(Gsm8k, ExactMatchNormalisesLikeLmEval) {
    EXPECT_TRUE(gsm8k_exact_match("$1,000.", "1000"));
    EXPECT_TRUE(gsm8k_exact_match("so #### 72", "72"));
    EXPECT_TRUE(gsm8k_exact_match("ABC", "abc"));
    EXPECT_FALSE(gsm8k_exact_match("72.5", "72"));
    EXPECT_FALSE(gsm8k_exact_match(kInvalidAnswer, "72"));
    EXPECT_TRUE(gsm8k_exact_match(gsm8k_flexible("48 + 24 = 72 clips"), gsm8k_gold("...\n#### 72")));
}

TEST(LlmAdapters, LastNumberWithinAThousandth) {
    EXPECT_DOUBLE_EQ(*last_number("The answer is 1,234.5 apples"), 1234.5);
    EXPECT_DOUBLE_EQ(*last_number("-3 and then 4."), 4.0);
    EXPECT_DOUBLE_EQ(*last_number("it is -7"), -7.0);
    EXPECT_FALSE(last_number("none").has_value());
    EXPECT_TRUE(number_correct(last_number("x = 2.0004"), 2.0));
    EXPECT_FALSE(number_correct(last_number("x = 2.002"), 2.0));
    EXPECT_FALSE(number_correct(std::nullopt, 0.0));
}

TEST(LlmAdapters, OptionLetterOriginalReadsAnswerAsA) {
    EXPECT_EQ(option_letter_original("Answer: C"), "A");  // the original's bug, kept for comparison
    EXPECT_EQ(option_letter_original("  d) or E"), "E");
    EXPECT_EQ(option_letter_original("no capitals"), "");
}

TEST(LlmAdapters, OptionLetterCorrected) {
    EXPECT_EQ(option_letter("Answer: C"), "C");
    EXPECT_EQ(option_letter("The correct option is (B)."), "B");
    EXPECT_EQ(option_letter("The options: A ) 10 , B ) 20 , C ) 30. The answer is B"), "B");
    EXPECT_EQ(option_letter("A man walks 3 km, so the result is D"), "D");  // article skipped
    EXPECT_EQ(option_letter("E ) 12"), "E");
    EXPECT_EQ(option_letter("A) 10"), "A");
    EXPECT_EQ(option_letter("Because ABC is large"), "");
}

TEST(Coqa, SquadNormalisationAndScores) {
    EXPECT_EQ(squad_normalize("The Cat, sat!  on a   mat."), "cat sat on mat");
    EXPECT_DOUBLE_EQ(squad_em("the White.", "white"), 1.0);
    EXPECT_NEAR(squad_f1("the big red dog", "red dog"), 0.8, 1e-12);
    EXPECT_DOUBLE_EQ(squad_f1("", ""), 1.0);
    EXPECT_DOUBLE_EQ(squad_f1("cat", ""), 0.0);
}

TEST(Coqa, LeaveOneOutOverSeveralGolds) {
    EmF1 one = coqa_scores("white", {"White"});
    EXPECT_DOUBLE_EQ(one.em, 1.0);
    EmF1 several = coqa_scores("cat", {"a cat", "dog"});
    EXPECT_DOUBLE_EQ(several.em, 0.5);
    EXPECT_DOUBLE_EQ(several.f1, 0.5);
    EXPECT_EQ(coqa_prediction("  yes\nQ: next question"), "yes");
}

TEST(Code, CompletionsAreCutAtTheFirstStopWord) {
    EXPECT_EQ(truncate_at_stop_words("    return a + b\nassert f(1) == 2\nprint(1)", mbpp_stop_words()),
              "    return a + b");
    EXPECT_EQ(truncate_at_stop_words("    return x\n\ndef other():\n", humaneval_stop_words()), "    return x\n");
    EXPECT_EQ(truncate_at_stop_words("no stop", humaneval_stop_words()), "no stop");
}
