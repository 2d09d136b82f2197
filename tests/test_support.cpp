#include "tests/test_support.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace ct3::test {

fs::path data_dir() { return fs::path(CT3_TEST_DATA_DIR); }

fs::path shared_dir() {
    if (const char * env = std::getenv("CT3_SHARED_DIR"); env != nullptr && *env != '\0') {
        return fs::exists(env) ? fs::path(env) : fs::path();
    }
    fs::path candidate = fs::path(CT3_SOURCE_DIR).parent_path() / "shared";
    return fs::exists(candidate / "models") ? candidate : fs::path();
}

TempDir::TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        fs::path p = fs::temp_directory_path() / ("ct3_test_" + std::to_string(rd()));
        if (fs::create_directory(p)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("could not create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string read_file(const fs::path & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const fs::path & path, const std::string & bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace ct3::test
