#include "eval/tasks.h"

#include <cmath>
#include <cstdlib>

#include "eval/scoring.h"
#include "kb/json_records.h"
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
    }
    return s;
}

}  // namespace ct3::eval
