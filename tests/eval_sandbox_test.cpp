// The code-execution sandbox contains what model-generated code may do: an infinite loop, a fork
// bomb, a huge allocation, a network call, a huge file — and still runs honest code.
#include <gtest/gtest.h>

#include <unistd.h>

#include "eval/sandbox.h"
#include "models/error.h"

using ct3::eval::run_python_sandboxed;
using ct3::eval::SandboxLimits;

namespace {

SandboxLimits fast() {
    SandboxLimits l;
    l.wall_seconds = 3.0;
    l.cpu_seconds = 3.0;
    l.memory_bytes = size_t{512} << 20;
    l.file_bytes = size_t{1} << 20;
    return l;
}

// Skips (visibly) where there is no Python, or where the kernel refuses seccomp filters: the
// sandbox then refuses to run anything, which is the intended behaviour, not a test failure.
#define CT3_REQUIRE_PYTHON()                                                                   \
    do {                                                                                       \
        if (access(ct3::eval::sandbox_python().c_str(), X_OK) != 0)                            \
            GTEST_SKIP() << ct3::eval::sandbox_python() << " not found (set CT3_PYTHON)";      \
        try {                                                                                  \
            run_python_sandboxed("pass\n", fast());                                            \
        } catch (const ct3::Error & e) {                                                       \
            GTEST_SKIP() << e.what();                                                          \
        }                                                                                      \
    } while (0)

}  // namespace

TEST(Sandbox, RunsHonestCodeAndReportsFailures) {
    CT3_REQUIRE_PYTHON();
    auto ok = run_python_sandboxed("def add(a, b):\n    return a + b\nassert add(1, 2) == 3\nprint('fine')\n", fast());
    EXPECT_EQ(ok.status, "passed") << ok.stderr_text;
    EXPECT_EQ(ok.stdout_text, "fine\n");
    auto bad = run_python_sandboxed("assert 1 + 1 == 3\n", fast());
    EXPECT_EQ(bad.status, "failed");
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.stderr_text.find("AssertionError"), std::string::npos);
}

TEST(Sandbox, InfiniteLoopIsKilledAtTheWallTimeout) {
    CT3_REQUIRE_PYTHON();
    SandboxLimits l = fast();
    l.wall_seconds = 1.0;
    auto r = run_python_sandboxed("while True:\n    pass\n", l);
    EXPECT_EQ(r.status, "timeout");
    EXPECT_LT(r.wall_seconds, 2.5);
    // A sleeping loop (no CPU) hits the wall limit too.
    auto s = run_python_sandboxed("import time\nwhile True:\n    time.sleep(0.1)\n", l);
    EXPECT_EQ(s.status, "timeout");
}

TEST(Sandbox, ForkBombCannotCreateProcesses) {
    CT3_REQUIRE_PYTHON();
    auto r = run_python_sandboxed("import os\nwhile True:\n    os.fork()\n", fast());
    EXPECT_EQ(r.status, "failed") << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("PermissionError"), std::string::npos) << r.stderr_text;
    auto sub = run_python_sandboxed("import subprocess\nsubprocess.run(['true'])\n", fast());
    EXPECT_EQ(sub.status, "failed");
    // Threads still work (some honest solutions use them).
    auto threads = run_python_sandboxed(
        "import threading\nout = []\nt = threading.Thread(target=lambda: out.append(1))\nt.start(); t.join()\n"
        "assert out == [1]\n",
        fast());
    EXPECT_EQ(threads.status, "passed") << threads.stderr_text;
}

TEST(Sandbox, HugeAllocationFailsInsideTheLimit) {
    CT3_REQUIRE_PYTHON();
    auto r = run_python_sandboxed("x = bytearray(50 * 1024**3)\n", fast());
    EXPECT_EQ(r.status, "failed");
    EXPECT_NE(r.stderr_text.find("MemoryError"), std::string::npos) << r.stderr_text;
}

TEST(Sandbox, NoNetwork) {
    CT3_REQUIRE_PYTHON();
    auto r = run_python_sandboxed(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\ns.connect(('127.0.0.1', 22))\n", fast());
    EXPECT_EQ(r.status, "failed");
    EXPECT_NE(r.stderr_text.find("PermissionError"), std::string::npos) << r.stderr_text;
    auto unix_ok = run_python_sandboxed("import socket\na, b = socket.socketpair()\na.send(b'x')\nassert b.recv(1) == b'x'\n", fast());
    EXPECT_EQ(unix_ok.status, "passed") << unix_ok.stderr_text;
}

TEST(Sandbox, FileSizeAndWorkingDirectoryAreContained) {
    CT3_REQUIRE_PYTHON();
    auto big = run_python_sandboxed("open('big.bin', 'wb').write(b'x' * (8 << 20))\n", fast());
    EXPECT_NE(big.status, "passed");  // SIGXFSZ kills it (or EFBIG when ignored)
    auto cwd = run_python_sandboxed("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n", fast());
    EXPECT_EQ(cwd.status, "passed");
    EXPECT_NE(cwd.stdout_text.find("/tmp/ct3-sandbox-"), std::string::npos);
    EXPECT_NE(cwd.stdout_text.find("['program.py']"), std::string::npos);
}
