// Chat prompt formats, hand-written for the few families ct3 runs rather than a Jinja interpreter:
// each reproduces the string that the model's Hugging Face `chat_template` renders.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ct3 {

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

// Known template names, in the order error messages list them.
const std::vector<std::string> & chat_template_names();

// Renders `messages` in the named format:
//   "llama3"  <|begin_of_text|> + per message <|start_header_id|>{role}<|end_header_id|>\n\n{content stripped}<|eot_id|>;
//             generation prompt <|start_header_id|>assistant<|end_header_id|>\n\n
//   "llama2"  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...; roles must
//             alternate user/assistant after an optional system message; the prompt always ends ready to generate
//   "chatml"  <|im_start|>{role}\n{content}<|im_end|>\n per message; generation prompt <|im_start|>assistant\n
//   "qwen2"   chatml, with Qwen2's default system message when the conversation has none
//   "plain"   contents joined with "\n", no special tokens (the original CT3 client's format)
// The special tokens are written as text: encode the result without adding a BOS when it starts with one.
// Throws ct3::Error(invalid_argument) for an unknown name (listing the known ones), an empty role, or a
// llama2 conversation whose roles do not alternate.
std::string apply_chat_template(const std::string & template_name, const std::vector<ChatMessage> & messages,
                                bool add_generation_prompt);

// Picks the template name for a model from the `chat_template` string of its tokenizer_config.json, by
// the markers each format uses. Returns "plain" when the file has no chat_template (a base model).
// Throws ct3::Error: not_found / bad_format for a missing or malformed file, unsupported when the
// template matches no known format (pass --chat-template explicitly then).
std::string detect_chat_template(const std::filesystem::path & tokenizer_config_json);

// Same, from the template text itself.
std::string detect_chat_template_from_text(const std::string & chat_template, const std::string & source = "template");

}  // namespace ct3
