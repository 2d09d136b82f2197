#include "eval/tasks.h"

#include <cmath>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "eval/python_random.h"
#include "eval/scoring.h"
#include "kb/json_records.h"
#include "kb/kb_files.h"
#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::eval {

namespace {

const std::string & text_field(const nlohmann::json & record, const char * name, const std::string & where) {
    auto it = record.find(name);
    CT3_CHECK(record.is_object() && it != record.end() && it->is_string(), ErrorKind::bad_format,
              "{}: field '{}' must be a string", where, name);
    return it->get_ref<const std::string &>();
}

void require_file(const fs::path & path, const std::string & task) {
    CT3_CHECK(fs::is_regular_file(path), ErrorKind::not_found,
              "task '{}': {} not found (--data_root, or give the file as {}=PATH)", task, path.string(), task);
}

Task gsm8k(const fs::path & path) {
    Task t;
    t.spec = {"gsm8k", Scoring::gsm8k, 256, false, {"Question:", "</s>", "<|im_end|>"}, path};
    require_file(path, "gsm8k");
    kb::for_each_json_record(path, [&](kb::JsonRecord && r) {
        const std::string where = kb::record_location(path, r);
        const std::string & q = text_field(r.value, "question", where);
        const std::string & a = text_field(r.value, "answer", where);
        t.items.push_back(
            {"gsm8k/" + std::to_string(r.row), "Question: " + q + "\nAnswer:", gsm8k_gold(a), q + "\n" + a, ""});
        return true;
    });
    return t;
}

Task llm_adapters(const std::string & name, const fs::path & path, bool letter) {
    Task t;
    t.spec = {name, letter ? Scoring::option_letter : Scoring::number, 1024, false, {}, path};
    t.spec.limit_shuffles = true;
    require_file(path, name);
    kb::for_each_json_record(path, [&](kb::JsonRecord && r) {
        const std::string where = kb::record_location(path, r);
        const std::string & instruction = text_field(r.value, "instruction", where);
        auto answer = r.value.find("answer");
        CT3_CHECK(answer != r.value.end() && (answer->is_string() || answer->is_number()), ErrorKind::bad_format,
                  "{}: field 'answer' must be a string or a number", where);
        std::string gold = answer->is_string() ? answer->get<std::string>() : answer->dump();
        if (!letter) {
            char * end = nullptr;
            const double v = std::strtod(gold.c_str(), &end);
            CT3_CHECK(end != gold.c_str() && std::isfinite(v), ErrorKind::bad_format,
                      "{}: field 'answer' is '{}' (expected a number for task '{}')", where, gold, name);
        }
        t.items.push_back({name + "/" + std::to_string(r.row), instruction, gold, instruction + " " + gold, ""});
        return true;
    });
    return t;
}

Task mbpp(const fs::path & path) {
    Task t;
    t.spec = {"mbpp", Scoring::code, 512, true, mbpp_stop_words(), path};
    require_file(path, "mbpp");
    kb::for_each_json_record(path, [&](kb::JsonRecord && r) {
        const std::string where = kb::record_location(path, r);
        auto tests = r.value.find("test_list");
        CT3_CHECK(tests != r.value.end() && tests->is_array() && !tests->empty(), ErrorKind::bad_format,
                  "{}: field 'test_list' must be a non-empty array of strings", where);
        std::string test_code;
        for (const auto & line : *tests) {
            CT3_CHECK(line.is_string(), ErrorKind::bad_format, "{}: field 'test_list' must hold strings", where);
            test_code += line.get<std::string>() + "\n";
        }
        auto setup = r.value.find("test_setup_code");
        if (setup != r.value.end() && setup->is_string() && !setup->get<std::string>().empty()) {
            test_code = setup->get<std::string>() + "\n" + test_code;
        }
        const std::string prompt =
            "\"\"\"\n" + text_field(r.value, "text", where) + "\n" + (*tests)[0].get<std::string>() + "\n\"\"\"\n";
        const std::string id =
            r.value.contains("task_id") ? "mbpp/" + r.value["task_id"].dump() : "mbpp/" + std::to_string(r.row);
        t.items.push_back({id, prompt, "", prompt + text_field(r.value, "code", where), test_code});
        return true;
    });
    return t;
}

Task humaneval(const fs::path & path) {
    Task t;
    t.spec = {"humaneval", Scoring::code, 512, true, humaneval_stop_words(), path};
    require_file(path, "humaneval");
    kb::for_each_json_record(path, [&](kb::JsonRecord && r) {
        const std::string where = kb::record_location(path, r);
        const std::string & prompt = text_field(r.value, "prompt", where);
        const std::string stripped = strip(prompt);
        const std::string test = "\n" + text_field(r.value, "test", where) + "\n" + "check(" +
                                 text_field(r.value, "entry_point", where) + ")\n";
        t.items.push_back({text_field(r.value, "task_id", where), stripped, "",
                           prompt + text_field(r.value, "canonical_solution", where), test});
        return true;
    });
    return t;
}

// The strings of a CoQA turn list: Stanford's [{"input_text": ...}, ...] or Hugging Face's
// {"input_text": [...]}.
std::vector<std::string> coqa_texts(const nlohmann::json & turns, const std::string & where) {
    std::vector<std::string> out;
    if (turns.is_array()) {
        for (const auto & turn : turns) out.push_back(text_field(turn, "input_text", where));
    } else if (turns.is_object() && turns.contains("input_text") && turns["input_text"].is_array()) {
        for (const auto & text : turns["input_text"]) {
            CT3_CHECK(text.is_string(), ErrorKind::bad_format, "{}: input_text must hold strings", where);
            out.push_back(text.get<std::string>());
        }
    } else {
        fail(ErrorKind::bad_format, "{}: expected a list of turns with 'input_text' or {{\"input_text\": [...]}}", where);
    }
    return out;
}

// lm-eval 0.4.7 coqa: doc_to_text and doc_to_target (the last turn; additional answers added when
// they differ case-insensitively).
EvalItem coqa_item(const nlohmann::json & story, const std::string & id, const std::string & where) {
    const std::vector<std::string> questions = coqa_texts(story.at("questions"), where + " questions");
    const std::vector<std::string> answers = coqa_texts(story.at("answers"), where + " answers");
    CT3_CHECK(!questions.empty() && answers.size() == questions.size(), ErrorKind::bad_format,
              "{}: {} questions but {} answers (expected the same number, at least one)", where, questions.size(),
              answers.size());
    std::string prompt = text_field(story, "story", where) + "\n\n";
    for (size_t i = 0; i < questions.size(); ++i) {
        prompt += "Q: " + questions[i] + "\n\n";
        prompt += i + 1 < questions.size() ? "A: " + answers[i] + "\n\n" : "A:";
    }
    std::vector<std::string> golds = {answers.back()};
    auto lower = [](std::string t) {
        for (char & c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return t;
    };
    if (story.contains("additional_answers") && story["additional_answers"].is_object()) {
        for (const auto & [key, turns] : story["additional_answers"].items()) {
            const std::vector<std::string> extra = coqa_texts(turns, where + " additional_answers " + key);
            if (extra.size() < questions.size()) continue;
            const std::string & answer = extra[questions.size() - 1];
            bool seen = false;
            for (const auto & g : golds) seen = seen || lower(g) == lower(answer);
            if (!seen) golds.push_back(answer);
        }
    }
    EvalItem item;
    item.id = id;
    item.prompt = prompt;
    item.gold = golds.front();
    item.document = prompt + " " + golds.front();  // the story, dialogue and answer (the KB layout)
    item.golds = std::move(golds);
    return item;
}

Task coqa(const fs::path & path) {
    Task t;
    t.spec = {"coqa", Scoring::coqa, 256, false, {"\nQ:"}, path};
    CT3_CHECK(fs::is_regular_file(path), ErrorKind::not_found,
              "task 'coqa': {} not found. CoQA is not in ../shared/data: give Stanford's coqa-dev-v1.0.json "
              "or EleutherAI/coqa validation rows (JSONL) as coqa=PATH",
              path.string());
    const std::string text = kb::read_whole_file(path, "CoQA file");
    const size_t first = text.find_first_not_of(" \t\r\n");
    nlohmann::json whole;
    bool stanford = false;
    if (first != std::string::npos && text[first] == '{') {
        try {
            whole = nlohmann::json::parse(text);
            stanford = whole.contains("data");
        } catch (const nlohmann::json::exception &) {
            stanford = false;  // JSON Lines: one story object per line
        }
    }
    if (stanford) {
        CT3_CHECK(whole["data"].is_array(), ErrorKind::bad_format, "{}: field 'data' must be a list of stories",
                  path.string());
        for (size_t i = 0; i < whole["data"].size(); ++i) {
            const auto & story = whole["data"][i];
            const std::string where = fmt::format("{} data[{}]", path.string(), i);
            const std::string id = story.contains("id") && story["id"].is_string() ? story["id"].get<std::string>()
                                                                                    : std::to_string(i);
            t.items.push_back(coqa_item(story, "coqa/" + id, where));
        }
    } else {
        std::istringstream in(text);
        std::string line;
        for (int64_t row = 0, line_no = 1; std::getline(in, line); ++line_no) {
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            const std::string where = fmt::format("{} line {}", path.string(), line_no);
            nlohmann::json story;
            try {
                story = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception & e) {
                fail(ErrorKind::bad_format, "{}: not JSON ({})", where, e.what());
            }
            t.items.push_back(coqa_item(story, "coqa/" + std::to_string(row++), where));
        }
    }
    CT3_CHECK(!t.items.empty(), ErrorKind::bad_format, "{}: no CoQA stories", path.string());
    return t;
}

}  // namespace

std::vector<std::string> builtin_tasks() {
    return {"gsm8k", "mawps", "svamp", "mathqa", "aqua", "mbpp", "humaneval"};
}

Task load_task(const std::string & spec, const fs::path & data_root) {
    const auto eq = spec.find('=');
    if (eq != std::string::npos) {
        const std::string name = spec.substr(0, eq);
        std::string path = spec.substr(eq + 1);
        bool letter = false;
        if (path.size() > 7 && path.compare(path.size() - 7, 7, ":letter") == 0) {
            letter = true;
            path.resize(path.size() - 7);
        }
        CT3_CHECK(!name.empty() && !path.empty(), ErrorKind::invalid_argument,
                  "--tasks entry '{}': expected NAME=PATH[:letter]", spec);
        if (name == "gsm8k") return gsm8k(path);
        if (name == "mbpp") return mbpp(path);
        if (name == "humaneval") return humaneval(path);
        if (name == "coqa") return coqa(path);
        return llm_adapters(name, path, letter || name == "mathqa" || name == "aqua");
    }
    const fs::path la = data_root / "llm_adapters" / "dataset";
    if (spec == "gsm8k") return gsm8k(data_root / "gsm8k" / "test.jsonl");
    if (spec == "mawps") return llm_adapters("mawps", la / "mawps" / "test.json", false);
    if (spec == "svamp") return llm_adapters("svamp", la / "SVAMP" / "test.json", false);
    if (spec == "mathqa") return llm_adapters("mathqa", la / "mathqa" / "test.json", true);
    if (spec == "aqua") return llm_adapters("aqua", la / "AQuA" / "test.json", true);
    if (spec == "mbpp") return mbpp(data_root / "mbpp" / "mbpp_test.jsonl");
    if (spec == "humaneval") return humaneval(data_root / "humaneval" / "HumanEval.jsonl");
    if (spec == "coqa") return coqa(data_root / "coqa" / "coqa-dev-v1.0.json");  // absent from ../shared/data
    fail(ErrorKind::invalid_argument, "unknown task '{}' (expected one of: {}, or NAME=PATH[:letter])", spec,
         fmt::join(builtin_tasks(), ", "));
}

ItemScore score_output(const Task & task, const EvalItem & item, const std::string & output,
                       const SandboxLimits & limits) {
    ItemScore s;
    switch (task.spec.scoring) {
        case Scoring::gsm8k: {
            std::string text = truncate_at_stop_words(output, task.spec.stop_strings);
            s.extracted = gsm8k_strict(text);
            s.correct = gsm8k_exact_match(s.extracted, item.gold);
            s.extracted_alt = gsm8k_flexible(text);
            s.correct_alt = gsm8k_exact_match(s.extracted_alt, item.gold);
            break;
        }
        case Scoring::number: {
            const auto value = last_number(output);
            s.extracted = value ? fmt::format("{}", *value) : "";
            s.correct = number_correct(value, std::strtod(item.gold.c_str(), nullptr));
            s.extracted_alt = s.extracted;
            s.correct_alt = s.correct;
            break;
        }
        case Scoring::option_letter:
            s.extracted = option_letter(output);
            s.correct = !s.extracted.empty() && s.extracted == item.gold;
            s.extracted_alt = option_letter_original(output);
            s.correct_alt = !s.extracted_alt.empty() && s.extracted_alt == item.gold;
            break;
        case Scoring::code: {
            // bigcode: prompt + the completion cut at its first stop word, then the tests.
            s.extracted = item.prompt + truncate_at_stop_words(output, task.spec.stop_strings);
            s.execution = run_python_sandboxed(s.extracted + "\n" + item.test_code, limits);
            s.correct = s.execution.status == "passed";
            s.correct_alt = s.correct;
            break;
        }
        case Scoring::coqa: {
            s.extracted = coqa_prediction(truncate_at_stop_words(output, task.spec.stop_strings));
            const EmF1 scores = coqa_scores(s.extracted, item.golds.empty() ? std::vector<std::string>{item.gold}
                                                                            : item.golds);
            s.em = scores.em;
            s.f1 = scores.f1;
            s.correct = scores.em >= 1.0;
            s.extracted_alt = s.extracted;
            s.correct_alt = s.correct;
            break;
        }
    }
    return s;
}

LimitSample parse_limit_sample(const std::string & name) {
    if (name == "original") return LimitSample::original;
    if (name == "shuffle") return LimitSample::shuffle;
    if (name == "first") return LimitSample::first;
    fail(ErrorKind::invalid_argument, "--limit_sample must be original, shuffle or first, got '{}'", name);
}

std::vector<size_t> select_items(const TaskSpec & spec, size_t count, int limit, LimitSample how, uint64_t seed,
                                 int shard, int shards) {
    CT3_CHECK(shards >= 1 && shard >= 0 && shard < shards, ErrorKind::invalid_argument,
              "--shard must be K/N with 0 <= K < N, got {}/{}", shard, shards);
    std::vector<size_t> order(count);
    for (size_t i = 0; i < count; ++i) order[i] = i;
    if (limit > 0 && static_cast<size_t>(limit) < count) {
        const bool shuffle = how == LimitSample::shuffle || (how == LimitSample::original && spec.limit_shuffles);
        if (shuffle) PythonRandom(seed).shuffle(order);
        order.resize(static_cast<size_t>(limit));
    }
    std::vector<size_t> mine;
    for (size_t i = static_cast<size_t>(shard); i < order.size(); i += static_cast<size_t>(shards)) {
        mine.push_back(order[i]);
    }
    return mine;
}

}  // namespace ct3::eval
