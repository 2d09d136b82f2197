// Internals shared by the API's translation units (api.cpp: routing; api_search.cpp: /v1/search
// and /v1/embeddings; api_compat.cpp: the original /search/). Not a public header.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "server/api.h"

namespace ct3::server::detail {

// A request the client got wrong (or a state it cannot use): becomes the error envelope.
struct HttpError : std::exception {
    HttpError(int status_, std::string message_, std::string param_ = {})
        : status(status_), message(std::move(message_)), param(std::move(param_)) {}
    const char * what() const noexcept override { return message.c_str(); }
    int status;
    std::string message;
    std::string param;  // the offending field, when there is one
};

template <typename... Args>
[[noreturn]] void reject(int status, const std::string & param, fmt::format_string<Args...> format, Args &&... args) {
    throw HttpError(status, fmt::format(format, std::forward<Args>(args)...), param);
}

// What a loaded KB offers the handlers.
struct Backend {
    kb::KnowledgeBase * kb = nullptr;
    kb::Retriever * retriever = nullptr;
    EmbedFn embed;
    std::string embedder_name;
};

struct Context {
    const ApiOptions & options;
    Metrics & metrics;
    const Backend & backend;
    std::mutex & embed_mutex;
};

// JSON text that never throws on invalid UTF-8 (user input quoted in messages, KB texts).
std::string dump_json(const nlohmann::json & value);
Response json_response(int status, const nlohmann::json & value);
Response json_response(int status, const nlohmann::ordered_json & value);

// Parses the body as a JSON object (duplicate keys and deep nesting rejected): HttpError 400.
nlohmann::json parse_body_object(const Request & request);

// A user-supplied string shortened and made printable for an error message.
std::string quote_for_message(const std::string & text, size_t max_chars = 64);
// "string", "number", "array", ... as JSON Schema names them.
const char * json_type_name(const nlohmann::json & value);

// Embeds texts with the KB's embedder under the embed mutex; [n, dim] row-major.
std::vector<float> embed_texts(const Context & context, const std::vector<std::string> & texts);

Response handle_v1_search(const Context & context, const Request & request);
Response handle_embeddings(const Context & context, const Request & request);
Response handle_original_search(const Context & context, const Request & request);

}  // namespace ct3::server::detail
