// Small KB builds for the kb_build / kb_open tests: two JSONL datasets written into a temp folder
// (read with the generic template reader), the texts the builder must keep (empty and duplicate
// texts dropped, first occurrence wins), and base build options with a small hashed embedder.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kb/builder.h"
#include "models/log.h"
#include "models/sha256.h"

namespace ct3::test {

struct KbFixtureText {
    std::string dataset;
    int64_t row;
    std::string text;
};

class KbFixture {
public:
    // alpha.jsonl: 300 records (two blank, ten exact repeats of earlier ones); beta.jsonl: 24
    // records (four repeat alpha texts, one repeats an earlier beta text).
    explicit KbFixture(const std::filesystem::path & dir) : dir_(dir) {
        ct3::log_init("warn");
        const char * topics[] = {"apples", "trains", "circles", "python lists", "fractions", "rivers"};
        std::vector<std::pair<std::string, std::string>> alpha, beta;
        for (int i = 0; i < 300; ++i) {
            std::string q = "Question " + std::to_string(i) + ": how many " + topics[i % 6] + " are there in box " +
                            std::to_string(i * 7 % 101) + "?";
            std::string a = "There are " + std::to_string(i * 13 % 997) + " " + topics[(i / 6) % 6] + ".";
            if (i == 40 || i == 41) q = a = "";                              // blank text " "
            if (i >= 290) q = alpha[size_t(i - 280)].first, a = alpha[size_t(i - 280)].second;  // repeats 10..15
            alpha.push_back({q, a});
        }
        for (int i = 0; i < 24; ++i) {
            if (i < 4) beta.push_back(alpha[size_t(100 + i)]);  // cross-dataset duplicates
            else if (i == 10) beta.push_back(beta[5]);           // duplicate within beta
            else beta.push_back({"Beta problem " + std::to_string(i) + " about weights", "It weighs " + std::to_string(i * 3) + " kg."});
        }
        write("alpha.jsonl", alpha);
        write("beta.jsonl", beta);
        std::vector<std::string> seen;
        add_expected("alpha", alpha, seen);
        add_expected("beta", beta, seen);
    }

    std::filesystem::path alpha() const { return dir_ / "alpha.jsonl"; }
    std::filesystem::path beta() const { return dir_ / "beta.jsonl"; }
    const std::vector<KbFixtureText> & expected() const { return expected_; }
    std::vector<std::string> expected_texts() const {
        std::vector<std::string> out;
        for (const auto & e : expected_) out.push_back(e.text);
        return out;
    }

    kb::BuildOptions options(const std::filesystem::path & save_dir) const {
        kb::BuildOptions o;
        o.datasets = {alpha().string(), beta().string()};
        o.data_root = dir_;
        o.text_template = "{q} {a}";
        o.embedder = "hashed:dim=64";
        o.shard_size = 64;
        o.save_dir = save_dir;
        return o;
    }

    int64_t expected_empty() const { return 2; }
    int64_t expected_duplicates_alpha() const { return 10; }
    int64_t expected_duplicates_beta() const { return 5; }

private:
    void write(const std::string & name, const std::vector<std::pair<std::string, std::string>> & records) {
        std::ofstream out(dir_ / name, std::ios::binary);
        for (const auto & [q, a] : records) out << nlohmann::json{{"q", q}, {"a", a}}.dump() << "\n";
    }

    void add_expected(const std::string & dataset, const std::vector<std::pair<std::string, std::string>> & records,
                      std::vector<std::string> & seen) {
        for (size_t row = 0; row < records.size(); ++row) {
            const std::string text = records[row].first + " " + records[row].second;
            if (text.find_first_not_of(' ') == std::string::npos) continue;
            bool duplicate = false;
            for (const auto & s : seen) duplicate = duplicate || s == text;
            if (duplicate) continue;
            seen.push_back(text);
            expected_.push_back({dataset, int64_t(row), text});
        }
    }

    std::filesystem::path dir_;
    std::vector<KbFixtureText> expected_;
};

// Rewrites manifest.json's files entry of `name` to the file's current size and sha256, so a test
// can replace a file consistently and reach the checks behind the checksum.
inline void refresh_manifest_entry(const std::filesystem::path & kb_dir, const std::string & name) {
    const auto manifest_path = kb_dir / "manifest.json";
    nlohmann::json m = nlohmann::json::parse(std::ifstream(manifest_path));
    m["files"][name] = {{"bytes", int64_t(std::filesystem::file_size(kb_dir / name))},
                        {"sha256", ct3::sha256_file(kb_dir / name)}};
    std::ofstream(manifest_path, std::ios::binary | std::ios::trunc) << m.dump(2);
}

}  // namespace ct3::test
