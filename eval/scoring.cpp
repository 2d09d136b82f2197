#include "eval/scoring.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>

namespace ct3::eval {

const char * const kInvalidAnswer = "[invalid]";

std::string strip(const std::string & s) {
    const size_t b = s.find_first_not_of(" \t\r\n\f\v");
    if (b == std::string::npos) return "";
    const size_t e = s.find_last_not_of(" \t\r\n\f\v");
    return s.substr(b, e - b + 1);
}


namespace {

std::string lower(std::string s) {
    for (char & c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool is_alpha(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) != 0;
}

// Python's re.findall semantics for one regex: each match's first non-empty group (or the whole match).
std::vector<std::string> find_all(const std::string & text, const std::regex & re) {
    std::vector<std::string> out;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
        const std::smatch & m = *it;
        std::string value = m.str(0);
        if (m.size() > 1) {
            value.clear();
            for (size_t g = 1; g < m.size(); ++g) {
                if (m[g].matched && m[g].length() > 0) {
                    value = m.str(g);
                    break;
                }
            }
        }
        out.push_back(value);
    }
    return out;
}

}  // namespace

std::string gsm8k_gold(const std::string & answer_field) {
    const size_t pos = answer_field.rfind("####");
    return strip(pos == std::string::npos ? answer_field : answer_field.substr(pos + 4));
}

std::string gsm8k_strict(const std::string & output) {
    static const std::regex re(R"(#### (\-?[0-9\.\,]+))");
    const auto matches = find_all(output, re);
    return matches.empty() ? kInvalidAnswer : strip(matches.front());
}

std::string gsm8k_flexible(const std::string & output) {
    static const std::regex re(R"((-?[$0-9.,]{2,})|(-?[0-9]+))");
    const auto matches = find_all(output, re);
    return matches.empty() ? kInvalidAnswer : strip(matches.back());
}

bool gsm8k_exact_match(const std::string & prediction, const std::string & gold) {
    // lm-eval's regexes_to_ignore; ECMAScript has no (?s), [\s\S] is its "any character".
    static const std::regex ignore[] = {std::regex(","), std::regex(R"(\$)"), std::regex(R"([\s\S]*#### )"),
                                        std::regex(R"(\.$)")};
    auto normalize = [&](std::string s) {
        for (const std::regex & re : ignore) s = std::regex_replace(s, re, "");
        return lower(s);
    };
    return normalize(prediction) == normalize(gold);
}

std::optional<double> last_number(const std::string & output) {
    std::string text = output;
    text.erase(std::remove(text.begin(), text.end(), ','), text.end());
    static const std::regex re(R"(-?\d+\.?\d*)");
    const auto matches = find_all(text, re);
    if (matches.empty()) return std::nullopt;
    try {
        return std::stod(matches.back());
    } catch (const std::exception &) {
        return std::nullopt;
    }
}

bool number_correct(const std::optional<double> & prediction, double label) {
    return prediction.has_value() && std::isfinite(*prediction) && std::abs(label - *prediction) <= 0.001;
}

std::string option_letter_original(const std::string & output) {
    for (char c : strip(output)) {
        if (c >= 'A' && c <= 'E') return std::string(1, c);
    }
    return "";
}

std::string option_letter(const std::string & output) {
    const std::string text = strip(output);
    // 1. An explicit statement; the last one wins (models often restate the options first).
    static const std::regex explicit_re(
        R"((?:[Aa]nswer|ANSWER|[Oo]ption|[Cc]hoice)\s*(?:is|IS|:|=)?\s*(?:[Oo]ption\s*)?[\(\[]?([A-E])(?![A-Za-z]))");
    const auto stated = find_all(text, explicit_re);
    if (!stated.empty()) return stated.back();
    // 2. The first standalone letter that is not the article "A".
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c < 'A' || c > 'E') continue;
        if (i > 0 && is_alpha(text[i - 1])) continue;
        if (i + 1 < text.size() && is_alpha(text[i + 1])) continue;
        const bool article = c == 'A' && i + 2 < text.size() && text[i + 1] == ' ' &&
                             std::islower(static_cast<unsigned char>(text[i + 2])) != 0;
        if (article) continue;
        return std::string(1, c);
    }
    return "";
}

std::string squad_normalize(const std::string & text) {
    // SQuAD order: lower -> remove punctuation -> remove articles -> collapse whitespace.
    std::string s;
    for (char c : lower(text)) {
        if (std::ispunct(static_cast<unsigned char>(c)) == 0) s += c;
    }
    static const std::regex articles(R"(\b(a|an|the)\b)");
    s = std::regex_replace(s, articles, " ");
    std::istringstream words(s);
    std::string word, out;
    while (words >> word) out += (out.empty() ? "" : " ") + word;
    return out;
}

double squad_em(const std::string & prediction, const std::string & gold) {
    return squad_normalize(prediction) == squad_normalize(gold) ? 1.0 : 0.0;
}

double squad_f1(const std::string & prediction, const std::string & gold) {
    auto tokens = [](const std::string & s) {
        std::vector<std::string> out;
        std::istringstream words(squad_normalize(s));
        std::string w;
        while (words >> w) out.push_back(w);
        return out;
    };
    const auto pred = tokens(prediction), ref = tokens(gold);
    if (pred.empty() || ref.empty()) return pred == ref ? 1.0 : 0.0;
    std::map<std::string, int> counts;
    for (const auto & w : ref) ++counts[w];
    int same = 0;
    for (const auto & w : pred) {
        auto it = counts.find(w);
        if (it != counts.end() && it->second > 0) {
            --it->second;
            ++same;
        }
    }
    if (same == 0) return 0.0;
    const double precision = static_cast<double>(same) / pred.size(), recall = static_cast<double>(same) / ref.size();
    return 2 * precision * recall / (precision + recall);
}

EmF1 coqa_scores(const std::string & prediction, const std::vector<std::string> & golds) {
    EmF1 out;
    if (golds.empty()) return out;
    if (golds.size() == 1) {
        out.em = squad_em(prediction, golds[0]);
        out.f1 = squad_f1(prediction, golds[0]);
        return out;
    }
    for (size_t i = 0; i < golds.size(); ++i) {
        double em = 0, f1 = 0;
        for (size_t j = 0; j < golds.size(); ++j) {
            if (j == i) continue;
            em = std::max(em, squad_em(prediction, golds[j]));
            f1 = std::max(f1, squad_f1(prediction, golds[j]));
        }
        out.em += em;
        out.f1 += f1;
    }
    out.em /= static_cast<double>(golds.size());
    out.f1 /= static_cast<double>(golds.size());
    return out;
}

std::string coqa_prediction(const std::string & output) {
    const std::string s = strip(output);
    return s.substr(0, s.find('\n'));
}

std::string truncate_at_stop_words(const std::string & completion, const std::vector<std::string> & stop_words) {
    size_t cut = completion.size();
    for (const std::string & w : stop_words) {
        if (w.empty()) continue;
        cut = std::min(cut, completion.find(w));
    }
    return completion.substr(0, cut);
}

const std::vector<std::string> & mbpp_stop_words() {
    static const std::vector<std::string> words = {"\nclass", "\nassert", "\n\"\"\"", "\nprint",
                                                   "\nif",    "\n<|/",    "\n```"};
    return words;
}

const std::vector<std::string> & humaneval_stop_words() {
    static const std::vector<std::string> words = {"\nclass", "\ndef", "\n#",   "\n@",
                                                   "\nprint", "\nif",  "\n```", "<file_sep>"};
    return words;
}

}  // namespace ct3::eval
