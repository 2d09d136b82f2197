#include "models/chat_template.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"

namespace ct3 {

const std::vector<std::string> & chat_template_names() {
    static const std::vector<std::string> names = {"llama3", "llama2", "chatml", "qwen2", "plain"};
    return names;
}

// Python's str.strip() / Jinja's |trim: ASCII whitespace at both ends.
static std::string strip(const std::string & s) {
    const char * ws = " \t\n\r\f\v";
    const size_t begin = s.find_first_not_of(ws);
    if (begin == std::string::npos) return "";
    const size_t end = s.find_last_not_of(ws);
    return s.substr(begin, end - begin + 1);
}

static std::string join(const std::vector<std::string> & items, const std::string & sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
    return out;
}

static std::string render_llama3(const std::vector<ChatMessage> & messages, bool add_generation_prompt) {
    std::string out = "<|begin_of_text|>";
    for (const auto & m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

// Llama-2-chat: the system prompt is folded into the first user turn; each user turn opens with BOS and
// each assistant answer closes with EOS. The format has no separate generation prompt: a conversation
// ending with a user turn is already ready to generate.
static std::string render_llama2(const std::vector<ChatMessage> & messages) {
    size_t first = 0;
    std::string system;
    bool has_system = false;
    if (!messages.empty() && messages[0].role == "system") {
        system = messages[0].content;
        has_system = true;
        first = 1;
    }
    std::string out;
    for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage & m = messages[i];
        const bool expect_user = (i - first) % 2 == 0;
        CT3_CHECK(m.role == (expect_user ? "user" : "assistant"), ErrorKind::invalid_argument,
                  "chat template llama2: message {} has role '{}' but roles must alternate user/assistant/... "
                  "after an optional first system message",
                  i, m.role);
        std::string content = m.content;
        if (i == first && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
        if (expect_user) out += "<s>[INST] " + strip(content) + " [/INST]";
        else out += " " + strip(content) + " </s>";
    }
    return out;
}

static std::string render_chatml(const std::vector<ChatMessage> & messages, bool add_generation_prompt,
                                 bool qwen2_default_system) {
    std::string out;
    if (qwen2_default_system && (messages.empty() || messages[0].role != "system")) {
        out += "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    }
    for (const auto & m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

std::string apply_chat_template(const std::string & template_name, const std::vector<ChatMessage> & messages,
                                bool add_generation_prompt) {
    for (size_t i = 0; i < messages.size(); ++i) {
        CT3_CHECK(!messages[i].role.empty(), ErrorKind::invalid_argument, "chat message {} has an empty role", i);
    }
    if (template_name == "llama3") return render_llama3(messages, add_generation_prompt);
    if (template_name == "llama2") return render_llama2(messages);
    if (template_name == "chatml") return render_chatml(messages, add_generation_prompt, false);
    if (template_name == "qwen2") return render_chatml(messages, add_generation_prompt, true);
    if (template_name == "plain") {
        std::vector<std::string> contents;
        for (const auto & m : messages) contents.push_back(m.content);
        return join(contents, "\n");
    }
    fail(ErrorKind::invalid_argument, "unknown chat template '{}' (known: {})", template_name,
         join(chat_template_names(), ", "));
}

std::string detect_chat_template_from_text(const std::string & t, const std::string & source) {
    auto has = [&](const char * marker) { return t.find(marker) != std::string::npos; };
    if (has("<|start_header_id|>") && has("<|eot_id|>")) return "llama3";
    if (has("<|im_start|>") && has("<|im_end|>")) return has("You are a helpful assistant") ? "qwen2" : "chatml";
    // Mistral also uses [INST] but without <<SYS>> and with different spacing: not the same format.
    if (has("[INST]") && has("<<SYS>>")) return "llama2";
    fail_hint(ErrorKind::unsupported, "pass --chat-template " + join(chat_template_names(), "|"),
              "{}: chat_template matches none of the known formats ({})", source, join(chat_template_names(), ", "));
}

std::string detect_chat_template(const std::filesystem::path & path) {
    std::ifstream in(path, std::ios::binary);
    CT3_CHECK(in, ErrorKind::not_found, "cannot open tokenizer config '{}'", path.string());
    std::stringstream buffer;
    buffer << in.rdbuf();
    nlohmann::json config = nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
    CT3_CHECK(!config.is_discarded() && config.is_object(), ErrorKind::bad_format,
              "'{}' is not a JSON object (expected a Hugging Face tokenizer_config.json)", path.string());
    if (!config.contains("chat_template") || config["chat_template"].is_null()) {
        logger("model")->info("{} has no chat_template; using the 'plain' format", path.string());
        return "plain";
    }
    const nlohmann::json & value = config["chat_template"];
    std::string text;
    if (value.is_string()) {
        text = value.get<std::string>();
    } else if (value.is_array()) {
        // Newer configs hold several named templates; the one named "default" is what HF applies.
        for (const auto & entry : value) {
            if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
                entry["template"].is_string())
                text = entry["template"].get<std::string>();
        }
        CT3_CHECK(!text.empty(), ErrorKind::bad_format,
                  "'{}': chat_template is a list without a {{\"name\": \"default\", \"template\": ...}} entry",
                  path.string());
    } else {
        fail(ErrorKind::bad_format, "'{}': chat_template must be a string or a list of named templates, got {}",
             path.string(), value.type_name());
    }
    return detect_chat_template_from_text(text, path.string());
}

}  // namespace ct3
