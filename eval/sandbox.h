// Runs model-generated Python (MBPP / HumanEval checks) so that it cannot hurt the machine:
//   - its own process group, killed as a whole at the wall-clock timeout;
//   - rlimits: CPU seconds, address space, file size, open files, no core dumps;
//   - a seccomp filter: no fork/vfork/new processes (threads are allowed), no sockets except
//     AF_UNIX (no network even where network namespaces are unavailable), and, best effort, a new
//     user + network namespace on top;
//   - a fresh temporary working directory (removed afterwards), a minimal environment, isolated
//     Python (-I: no user site, no PYTHON* variables).
// Linux x86-64 only (other architectures fail closed: the filter kills the process).
#pragma once

#include <cstddef>
#include <string>

namespace ct3::eval {

struct SandboxLimits {
    double wall_seconds = 10.0;
    double cpu_seconds = 10.0;
    size_t memory_bytes = size_t{2} << 30;     // RLIMIT_AS
    size_t file_bytes = size_t{16} << 20;      // RLIMIT_FSIZE
    size_t output_bytes = size_t{64} << 10;    // kept of stdout and of stderr each
};

struct SandboxResult {
    std::string status;      // "passed" (exit 0), "failed" (non-zero exit), "timeout", "killed" (signal)
    int exit_code = -1;      // when it exited
    int signal = 0;          // when a signal ended it (SIGKILL at the timeout, SIGXCPU, SIGXFSZ, SIGSYS, ...)
    double wall_seconds = 0;
    std::string stdout_text, stderr_text;  // truncated to output_bytes
    bool network_namespace = false;        // whether the extra namespace could be created
};

// The Python interpreter used: $CT3_PYTHON, else /usr/bin/python3.
std::string sandbox_python();

// Runs `program` (Python source) under the limits. Throws ct3::Error (io) only when the sandbox
// itself cannot be set up (no interpreter, fork/pipe failure); whatever the program does is a result.
SandboxResult run_python_sandboxed(const std::string & program, const SandboxLimits & limits = {});

}  // namespace ct3::eval
