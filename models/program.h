// The shared tail of every program's main(): errors become one line on stderr and exit status 1.
#pragma once

#include <functional>

namespace ct3 {

// Runs `body` and turns an escaping ct3::Error (or any std::exception) into
// "<program>: error: ..." on stderr (after flushing stdout, so results and error never interleave)
// and exit status 1.
int run_program(const char * program, const std::function<int()> & body);

}  // namespace ct3
