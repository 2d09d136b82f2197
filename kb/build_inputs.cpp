#include "kb/build_inputs.h"

#include <functional>
#include <memory>
#include <string_view>
#include <unordered_set>

#include <fmt/ranges.h>

#include "models/error.h"
#include "models/log.h"
#include "models/sha256.h"

namespace fs = std::filesystem;

namespace ct3::kb {

namespace {

constexpr int kOverlapNgram = 13;       // GPT-3's decontamination n-gram, as the pretraining corpus
constexpr int64_t kOverlapsLogged = 5;  // overlapping texts logged one by one per dataset

bool is_blank(const std::string & text) {
    return text.find_first_not_of(" \t\n\r\f\v") == std::string::npos;
}

// A set of entry ids keyed by their text, so each text is stored once (in BuildInputs::texts).
struct TextHash {
    const std::vector<std::string> * texts;
    size_t operator()(int64_t id) const { return std::hash<std::string_view>()((*texts)[size_t(id)]); }
};
struct TextEqual {
    const std::vector<std::string> * texts;
    bool operator()(int64_t a, int64_t b) const { return (*texts)[size_t(a)] == (*texts)[size_t(b)]; }
};

std::vector<std::string> expand_tokens(const std::vector<std::string> & tokens, const fs::path & data_root) {
    CT3_CHECK(!tokens.empty(), ErrorKind::invalid_argument,
              "--datasets: give at least one dataset (\"all\", a known name, NAME=PATH or a file)");
    std::vector<std::string> out;
    for (const auto & token : tokens) {
        if (token != "all") {
            out.push_back(token);
            continue;
        }
        const auto present = available_datasets(data_root);
        if (present.empty())
            fail_hint(ErrorKind::not_found, "pass --data_root DIR or set CT3_DATA_DIR",
                      "--datasets all: none of the known datasets is present under the data root '{}'",
                      data_root.string());
        logger("kb")->info("--datasets all: {}", fmt::format("{}", fmt::join(present, ", ")));
        out.insert(out.end(), present.begin(), present.end());
    }
    return out;
}

}  // namespace

BuildInputs read_build_inputs(const std::vector<std::string> & tokens, const fs::path & data_root,
                              const std::string & text_template, int64_t limit, bool decontaminate) {
    auto log = logger("kb");
    CT3_CHECK(limit >= 0, ErrorKind::invalid_argument, "--limit must be >= 0 (got {})", limit);
    BuildInputs in;
    for (const auto & token : expand_tokens(tokens, data_root)) {
        SourceStats source;
        source.token = token;
        source.spec = resolve_dataset(token, data_root, text_template);
        for (const auto & other : in.sources)
            CT3_CHECK(other.spec.name != source.spec.name, ErrorKind::invalid_argument,
                      "--datasets: dataset '{}' is given twice (tokens '{}' and '{}')", source.spec.name, other.token,
                      token);
        source.sha256 = source.spec.sha256.empty() ? sha256_file(source.spec.path) : source.spec.sha256;
        in.sources.push_back(std::move(source));
    }

    // Loaded only after every token resolved, so a bad token fails before this work.
    std::unique_ptr<TestSetIndex> test_index;
    if (decontaminate) {
        test_index = std::make_unique<TestSetIndex>(kOverlapNgram);
        test_index->load_data_root(data_root);  // warns once about absent sets (fixture roots have none)
        in.decontaminated = true;
        in.ngram = kOverlapNgram;
        for (const auto & set : test_index->sets())
            if (!set.path.empty()) in.test_sets.push_back(set);
    }

    const TextHash hash{&in.texts};
    const TextEqual equal{&in.texts};
    std::unordered_set<int64_t, TextHash, TextEqual> seen(1024, hash, equal);
    for (size_t s = 0; s < in.sources.size(); ++s) {
        SourceStats & source = in.sources[s];
        source.first_id = in.size();
        read_dataset(
            source.spec,
            [&](Record && record) {
                source.rows += 1;
                if (is_blank(record.text)) {
                    source.empty += 1;
                    return;
                }
                if (test_index) {
                    const Overlap overlap = test_index->check(record.text);
                    if (overlap.found()) {
                        source.test_overlap_by_set[overlap.test_set] += 1;
                        if (source.test_overlap++ < kOverlapsLogged)
                            log->info("dataset {} row {}: dropped, {} overlap with {} record {}: \"{}\"",
                                      source.spec.name, record.row,
                                      overlap.exact ? "exact" : fmt::format("{}-gram", test_index->ngram()),
                                      overlap.test_set, overlap.test_row, overlap.match);
                        return;
                    }
                }
                in.texts.push_back(std::move(record.text));
                if (!seen.insert(in.size() - 1).second) {
                    in.texts.pop_back();
                    source.duplicates += 1;
                    return;
                }
                in.source_of.push_back(int32_t(s));
                in.rows.push_back(record.row);
                source.entries += 1;
            },
            limit);
        in.duplicates += source.duplicates;
        in.empty += source.empty;
        in.test_overlap += source.test_overlap;
        log->info("dataset {} ({}): {} records -> {} texts ({} test-set overlaps, {} duplicates, {} empty dropped)",
                  source.spec.name, source.spec.path.string(), source.rows, source.entries, source.test_overlap,
                  source.duplicates, source.empty);
        if (source.test_overlap > kOverlapsLogged)
            log->info("dataset {}: {} more texts overlapping evaluation sets dropped (not logged one by one)",
                      source.spec.name, source.test_overlap - kOverlapsLogged);
        if (source.empty > 0)
            log->warn("dataset {}: {} empty or whitespace-only texts dropped", source.spec.name, source.empty);
    }
    if (in.texts.empty()) {
        int64_t rows = 0;
        for (const auto & s : in.sources) rows += s.rows;
        fail(ErrorKind::invalid_argument,
             "--datasets: no text to index ({} records read, {} empty, {} duplicates, {} overlapping evaluation sets)",
             rows, in.empty, in.duplicates, in.test_overlap);
    }
    return in;
}

nlohmann::json sources_json(const BuildInputs & inputs) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto & s : inputs.sources) {
        out.push_back({{"name", s.spec.name},
                       {"token", s.token},
                       {"reader", s.spec.reader},
                       {"path", fs::absolute(s.spec.path).lexically_normal().string()},
                       {"sha256", s.sha256},
                       {"rows", s.rows},
                       {"entries", s.entries},
                       {"duplicates", s.duplicates},
                       {"test_overlap", s.test_overlap},
                       {"test_overlap_by_set", s.test_overlap_by_set},
                       {"empty", s.empty},
                       {"first_id", s.first_id}});
    }
    return out;
}

nlohmann::json decontamination_json(const BuildInputs & inputs) {
    nlohmann::json sets = nlohmann::json::array();
    for (const auto & t : inputs.test_sets) sets.push_back({{"name", t.name}, {"records", t.documents}});
    return {{"enabled", inputs.decontaminated},
            {"ngram", inputs.ngram},
            {"test_sets", sets},
            {"dropped", inputs.test_overlap}};
}

}  // namespace ct3::kb
