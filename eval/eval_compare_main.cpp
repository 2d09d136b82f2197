// ct3-eval-compare: puts ct3-eval run folders side by side (the first is the baseline).
//
//   ct3-eval-compare --out results/compare base=results/base sift=results/sift faiss=results/faiss
//
// Writes compare.json, compare.md and SVG charts into --out and prints the Markdown to stdout.
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "eval/compare.h"
#include "models/log.h"
#include "models/program.h"

int main(int argc, char ** argv) {
    std::vector<std::string> specs;
    std::string out, log_level;
    CLI::App app{"ct3-eval-compare: compare ct3-eval run folders on the items they all scored"};
    app.add_option("runs", specs, "NAME=FOLDER (or FOLDER) per run; the first is the baseline")->required();
    app.add_option("--out", out, "Folder for compare.json, compare.md and the SVG charts")->required();
    ct3::add_log_flags(app, log_level);
    CLI11_PARSE(app, argc, argv);
    return ct3::run_program("ct3-eval-compare", [&] {
        ct3::log_init(log_level);
        std::vector<ct3::eval::RunFolder> runs;
        for (const std::string & spec : specs) runs.push_back(ct3::eval::parse_run_folder(spec));
        const nlohmann::json comparison = ct3::eval::compare_runs(runs);
        ct3::eval::write_comparison(out, comparison);
        std::cout << std::ifstream(std::filesystem::path(out) / "compare.md").rdbuf();
        return 0;
    });
}
