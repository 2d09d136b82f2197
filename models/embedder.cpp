#include "models/embedder.h"

#include <filesystem>
#include <map>

#include "models/error.h"
#include "models/hashed_embedder.h"
#include "models/sentence_embedder.h"

namespace ct3 {

namespace {

// "dim=384,buckets=1048576,..." -> key/value map; the spec string is named in errors.
std::map<std::string, std::string> parse_params(const std::string & text, const std::string & spec) {
    std::map<std::string, std::string> out;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t comma = text.find(',', pos);
        std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        size_t eq = item.find('=');
        CT3_CHECK(eq != std::string::npos && eq > 0, ErrorKind::invalid_argument,
                  "embedder spec '{}': parameter '{}' is not key=value", spec, item);
        CT3_CHECK(out.emplace(item.substr(0, eq), item.substr(eq + 1)).second, ErrorKind::invalid_argument,
                  "embedder spec '{}': parameter '{}' given twice", spec, item.substr(0, eq));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

uint64_t parse_u64(const std::string & value, const std::string & key, const std::string & spec) {
    CT3_CHECK(!value.empty() && value.size() <= 19 && value.find_first_not_of("0123456789") == std::string::npos,
              ErrorKind::invalid_argument, "embedder spec '{}': {}='{}' is not a non-negative integer", spec, key,
              value);
    return std::stoull(value);
}

std::unique_ptr<Embedder> load_hashed(const std::string & spec) {
    HashedEmbedderConfig config;
    std::string idf_path;
    std::map<std::string, std::string> params;
    if (spec.size() > 6) {
        CT3_CHECK(spec[6] == ':', ErrorKind::invalid_argument,
                  "embedder spec '{}': expected 'hashed' or 'hashed:key=value,...'", spec);
        params = parse_params(spec.substr(7), spec);
    }
    for (const auto & [key, value] : params) {
        if (key == "dim") config.dim = static_cast<int64_t>(parse_u64(value, key, spec));
        else if (key == "buckets" || key == "n_buckets") config.n_buckets = parse_u64(value, key, spec);
        else if (key == "ngram_min") config.ngram_min = static_cast<int>(std::min<uint64_t>(parse_u64(value, key, spec), 1000));
        else if (key == "ngram_max") config.ngram_max = static_cast<int>(std::min<uint64_t>(parse_u64(value, key, spec), 1000));
        else if (key == "seed") config.seed = parse_u64(value, key, spec);
        else if (key == "idf") idf_path = value;
        else fail(ErrorKind::invalid_argument, "embedder spec '{}': unknown parameter '{}' (expected dim, buckets, "
                  "ngram_min, ngram_max, seed, idf)", spec, key);
    }
    config.validate();
    if (idf_path.empty()) return std::make_unique<HashedEmbedder>(config);
    auto loaded = std::make_unique<HashedEmbedder>(HashedEmbedder::load(idf_path));
    const auto & c = loaded->config();
    // Parameters given next to idf= must agree with the file, or vectors would silently differ.
    CT3_CHECK((!params.count("dim") || c.dim == config.dim) &&
                  (!params.count("buckets") && !params.count("n_buckets") ? true : c.n_buckets == config.n_buckets) &&
                  (!params.count("ngram_min") || c.ngram_min == config.ngram_min) &&
                  (!params.count("ngram_max") || c.ngram_max == config.ngram_max) &&
                  (!params.count("seed") || c.seed == config.seed),
              ErrorKind::invalid_argument, "embedder spec '{}': parameters disagree with the idf file '{}' ({})", spec,
              idf_path, loaded->identity().dump());
    return loaded;
}

}  // namespace

std::unique_ptr<Embedder> load_embedder(const std::string & spec, const EmbedderOptions & options) {
    if (spec == "hashed" || spec.rfind("hashed:", 0) == 0) return load_hashed(spec);
    std::error_code ec;
    if (std::filesystem::is_directory(spec, ec)) return SentenceEmbedder::load(spec, options);
    fail_hint(ErrorKind::not_found, "use 'hashed' for the built-in embedder",
              "embedder spec '{}' is neither 'hashed[:key=value,...]' nor an existing sentence-transformers folder",
              spec);
}

}  // namespace ct3
