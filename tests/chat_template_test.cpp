// Chat templates: exact strings as the Hugging Face chat_template of each family renders them, and
// template detection from tokenizer_config.json files.
#include <nlohmann/json.hpp>

#include "models/chat_template.h"
#include "models/error.h"
#include "tests/test_support.h"

namespace {

const std::vector<ct3::ChatMessage> k_conversation = {
    {"system", "You are terse."},
    {"user", "  What is 2+2?\n"},
    {"assistant", "4"},
    {"user", "And 3+3?"},
};

// The chat_template strings of the real tokenizer_config.json files (Meta-Llama-3-8B-Instruct,
// Qwen2-0.5B-Instruct, Llama-2-7b-chat-hf), abbreviated to the parts that carry the markers.
const char * k_llama3_jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char * k_qwen2_jinja =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";
const char * k_llama2_jinja =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
    "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

std::string detect_from_json(const std::string & json) {
    ct3::test::TempDir dir;
    const auto path = dir.path() / "tokenizer_config.json";
    ct3::test::write_file(path, json);
    return ct3::detect_chat_template(path);
}

std::string quoted(const std::string & s) { return nlohmann::json(s).dump(); }

}  // namespace

TEST(ChatTemplate, Llama3ExactString) {
    EXPECT_EQ(ct3::apply_chat_template("llama3", k_conversation, true),
              "<|begin_of_text|>"
              "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(ct3::apply_chat_template("llama3", {{"user", "hi"}}, false),
              "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST(ChatTemplate, Llama2ExactString) {
    EXPECT_EQ(ct3::apply_chat_template("llama2", k_conversation, true),
              "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n  What is 2+2? [/INST] 4 </s>"
              "<s>[INST] And 3+3? [/INST]");
    EXPECT_EQ(ct3::apply_chat_template("llama2", {{"user", " hi "}}, true), "<s>[INST] hi [/INST]");
    try {
        ct3::apply_chat_template("llama2", {{"user", "a"}, {"user", "b"}}, true);
        FAIL() << "expected an alternation error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("alternate"), std::string::npos) << e.what();
    }
}

TEST(ChatTemplate, ChatmlAndQwen2ExactStrings) {
    const std::vector<ct3::ChatMessage> user_only = {{"user", "Hello"}};
    EXPECT_EQ(ct3::apply_chat_template("chatml", user_only, true),
              "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(ct3::apply_chat_template("qwen2", user_only, true),
              "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(ct3::apply_chat_template("qwen2", {{"system", "Be brief."}, {"user", "Hi"}}, false),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, PlainJoinsContents) {
    EXPECT_EQ(ct3::apply_chat_template("plain", k_conversation, true),
              "You are terse.\n  What is 2+2?\n\n4\nAnd 3+3?");
    EXPECT_EQ(ct3::apply_chat_template("plain", {}, true), "");
}

TEST(ChatTemplate, UnknownNameListsKnownOnes) {
    try {
        ct3::apply_chat_template("vicuna", k_conversation, true);
        FAIL() << "expected an error";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::invalid_argument);
        const std::string what = e.what();
        EXPECT_NE(what.find("vicuna"), std::string::npos);
        for (const auto & name : ct3::chat_template_names()) EXPECT_NE(what.find(name), std::string::npos) << name;
    }
    EXPECT_THROW(ct3::apply_chat_template("llama3", {{"", "x"}}, true), ct3::Error);
}

TEST(ChatTemplate, DetectsFromTokenizerConfig) {
    EXPECT_EQ(detect_from_json("{\"chat_template\": " + quoted(k_llama3_jinja) + "}"), "llama3");
    EXPECT_EQ(detect_from_json("{\"chat_template\": " + quoted(k_qwen2_jinja) + "}"), "qwen2");
    EXPECT_EQ(detect_from_json("{\"chat_template\": " + quoted(k_llama2_jinja) + "}"), "llama2");
    EXPECT_EQ(detect_from_json(R"({"chat_template": "{% for m in messages %}<|im_start|>{{m.role}}<|im_end|>{% endfor %}"})"),
              "chatml");
    EXPECT_EQ(detect_from_json(R"({"model_max_length": 2048})"), "plain");
    EXPECT_EQ(detect_from_json(R"({"chat_template": [{"name": "tool_use", "template": "x"},
                                                      {"name": "default", "template": )" +
                               quoted(k_llama3_jinja) + "}]}"),
              "llama3");
}

TEST(ChatTemplate, DetectionErrors) {
    try {
        detect_from_json(R"({"chat_template": "{{ messages[0].content }}"})");
        FAIL() << "expected unsupported";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::unsupported);
        EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos) << e.what();
    }
    try {
        detect_from_json("{not json");
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::bad_format);
        EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos);
    }
    EXPECT_THROW(detect_from_json(R"({"chat_template": 42})"), ct3::Error);
    EXPECT_THROW(detect_from_json(R"({"chat_template": [{"name": "tool_use", "template": "x"}]})"), ct3::Error);
    try {
        ct3::detect_chat_template("/nonexistent/tokenizer_config.json");
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::not_found);
    }
}

TEST(ChatTemplate, RealConfigWithoutTemplateIsPlain) {
    CT3_REQUIRE_SHARED();
    const auto path = ct3::test::shared_dir() / "models/all-MiniLM-L6-v2-tokenizer-only/tokenizer_config.json";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
    EXPECT_EQ(ct3::detect_chat_template(path), "plain");
}
