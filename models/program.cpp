#include "models/program.h"

#include <cstdio>
#include <exception>

#include "models/error.h"

namespace ct3 {

int run_program(const char * program, const std::function<int()> & body) {
    try {
        return body();
    } catch (const Error & e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    } catch (const std::exception & e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: unexpected error: %s\n", program, e.what());
    }
    return 1;
}

}  // namespace ct3
