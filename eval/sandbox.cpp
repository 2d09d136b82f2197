#include "eval/sandbox.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/error.h"

namespace fs = std::filesystem;

namespace ct3::eval {

namespace {

using Clock = std::chrono::steady_clock;

// seccomp: fork/vfork -> EPERM, clone3 -> ENOSYS (glibc falls back to clone, whose flags are
// visible), clone without CLONE_THREAD -> EPERM, socket(domain != AF_UNIX) -> EPERM; all else allowed.
#define CT3_RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define CT3_ERRNO(e) (SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))
const sock_filter kFilter[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    /* 2 */ CT3_RET(SECCOMP_RET_KILL_PROCESS),
    /* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 0, 1),
    /* 5 */ CT3_RET(CT3_ERRNO(EPERM)),
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vfork, 0, 1),
    /* 7 */ CT3_RET(CT3_ERRNO(EPERM)),
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
    /* 9 */ CT3_RET(CT3_ERRNO(ENOSYS)),
    /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
    /* 11 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
    /* 12 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0),
    /* 13 */ CT3_RET(CT3_ERRNO(EPERM)),
    /* 14 */ CT3_RET(SECCOMP_RET_ALLOW),
    /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4),
    /* 16 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
    /* 17 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0),
    /* 18 */ CT3_RET(CT3_ERRNO(EPERM)),
    /* 19 */ CT3_RET(SECCOMP_RET_ALLOW),
    /* 20 */ CT3_RET(SECCOMP_RET_ALLOW),
};
#undef CT3_RET
#undef CT3_ERRNO

void set_limit(int resource, rlim_t value) {
    rlimit r{value, value};
    setrlimit(resource, &r);
}

// Only async-signal-safe calls: the parent may be multi-threaded. Never returns.
[[noreturn]] void child(const char * python, const char * script, const char * workdir, char * const * envp, int out_fd,
                        int err_fd, const SandboxLimits & limits, int ns_pipe) {
    setpgid(0, 0);
    // Best effort: an empty network namespace (unprivileged via a user namespace where allowed).
    // The status pipe is close-on-exec: the parent reads the namespace byte, then either EOF (the
    // exec happened) or one byte naming the setup step that failed.
    const char ns_ok = unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 1 : 0;
    (void)!write(ns_pipe, &ns_ok, 1);
    auto setup_failed = [ns_pipe](char step) {
        (void)!write(ns_pipe, &step, 1);
        _exit(125);
    };
    if (chdir(workdir) != 0) setup_failed('d');
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    for (int fd = 3; fd < 1024; ++fd) {
        if (fd != ns_pipe) close(fd);
    }
    const rlim_t cpu = static_cast<rlim_t>(limits.cpu_seconds + 0.999);
    set_limit(RLIMIT_CPU, cpu < 1 ? 1 : cpu);
    set_limit(RLIMIT_AS, limits.memory_bytes);
    set_limit(RLIMIT_FSIZE, limits.file_bytes);
    set_limit(RLIMIT_NOFILE, 64);
    set_limit(RLIMIT_CORE, 0);
    sock_fprog prog{static_cast<unsigned short>(sizeof(kFilter) / sizeof(kFilter[0])),
                    const_cast<sock_filter *>(kFilter)};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        setup_failed('s');  // never run unconfined
    }
    char * const argv[] = {const_cast<char *>(python), const_cast<char *>("-I"), const_cast<char *>("-B"),
                           const_cast<char *>(script), nullptr};
    execve(python, argv, envp);
    setup_failed('x');
    _exit(127);
}

void drain(int fd, std::string & into, size_t cap, bool & open) {
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN)) open = false;
        return;
    }
    if (into.size() < cap) into.append(buf, std::min(static_cast<size_t>(n), cap - into.size()));
}

}  // namespace

std::string sandbox_python() {
    const char * env = std::getenv("CT3_PYTHON");
    return env != nullptr && *env != '\0' ? env : "/usr/bin/python3";
}

SandboxResult run_python_sandboxed(const std::string & program, const SandboxLimits & limits) {
    const std::string python = sandbox_python();
    CT3_CHECK(access(python.c_str(), X_OK) == 0, ErrorKind::not_found,
              "the sandbox's Python interpreter '{}' is not executable (set CT3_PYTHON)", python);
    char tmpl[] = "/tmp/ct3-sandbox-XXXXXX";
    CT3_CHECK(mkdtemp(tmpl) != nullptr, ErrorKind::io, "sandbox: mkdtemp failed: {}", std::strerror(errno));
    const fs::path workdir(tmpl);
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{workdir};
    const fs::path script = workdir / "program.py";
    {
        std::ofstream out(script, std::ios::binary);
        out << program;
        CT3_CHECK(out.good(), ErrorKind::io, "sandbox: cannot write {}", script.string());
    }
    const std::string home = "HOME=" + workdir.string();
    std::vector<std::string> env_strings = {"PATH=/usr/bin:/bin", home, "LANG=C.UTF-8", "PYTHONHASHSEED=0",
                                            "OMP_NUM_THREADS=1"};
    std::vector<char *> envp;
    for (auto & s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);

    int out_pipe[2], err_pipe[2], ns_pipe[2];
    CT3_CHECK(pipe2(out_pipe, O_CLOEXEC) == 0 && pipe2(err_pipe, O_CLOEXEC) == 0 && pipe2(ns_pipe, O_CLOEXEC) == 0,
              ErrorKind::io, "sandbox: pipe failed: {}", std::strerror(errno));
    const std::string script_str = script.string(), workdir_str = workdir.string();
    const auto start = Clock::now();
    const pid_t pid = fork();
    if (pid == 0) {
        child(python.c_str(), script_str.c_str(), workdir_str.c_str(), envp.data(), out_pipe[1], err_pipe[1], limits,
              ns_pipe[1]);
    }
    const int fork_errno = errno;
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(ns_pipe[1]);
    if (pid < 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        close(ns_pipe[0]);
        fail(ErrorKind::io, "sandbox: fork failed: {}", std::strerror(fork_errno));
    }
    setpgid(pid, pid);  // also from the parent: no window in which a kill(-pid) misses

    SandboxResult result;
    char status_bytes[2] = {0, 0};
    ssize_t got = 0;
    while (got < 2) {
        const ssize_t n = read(ns_pipe[0], status_bytes + got, static_cast<size_t>(2 - got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += n;
    }
    close(ns_pipe[0]);
    result.network_namespace = got >= 1 && status_bytes[0] == 1;
    if (got == 2) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        int ignored = 0;
        waitpid(pid, &ignored, 0);
        const char step = status_bytes[1];
        fail_hint(ErrorKind::unavailable, "the sandbox needs seccomp filters (PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP)",
                  "sandbox: could not {} for the program; refusing to run it unconfined",
                  step == 's'   ? "install the seccomp filter"
                  : step == 'd' ? "enter the work directory"
                                : "exec " + python);
    }

    bool out_open = true, err_open = true, timed_out = false;
    while (out_open || err_open) {
        const double left = limits.wall_seconds - std::chrono::duration<double>(Clock::now() - start).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
        const int n = poll(fds, 2, static_cast<int>(left * 1000) + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
            drain(out_pipe[0], result.stdout_text, limits.output_bytes, out_open);
        if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
            drain(err_pipe[0], result.stderr_text, limits.output_bytes, err_open);
    }
    // Whatever is still running in the group (the program itself at a timeout) is killed.
    kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (timed_out) {
        result.status = "timeout";
        result.signal = SIGKILL;
    } else if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
        result.status = result.exit_code == 0 ? "passed" : "failed";
    } else {
        result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        result.status = "killed";
    }
    return result;
}

}  // namespace ct3::eval
