#include "models/pretrain/distributed.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>  // 1.13 has it too (unused there)
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/torch.h>
#include <torch/version.h>

// Gloo: Debian's libtorch is built with it but its c10d header needs the gloo headers
// (libgloo-dev); PyTorch's wheels ship them under torch/include. Without them CPU data parallel is
// reported as unsupported.
#if __has_include(<gloo/config.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define CT3_HAVE_GLOO 1
#endif
// NCCL: CT3_HAVE_NCCL is defined by models/pretrain/CMakeLists.txt when libtorch has CUDA and
// nccl.h is found (the nvidia-nccl wheel beside torch); it also defines USE_C10D_NCCL.
#ifdef CT3_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "models/error.h"
#include "models/log.h"

namespace ct3::pretrain {

namespace {

// The collective interface: since 2.0 the backends (ProcessGroupGloo, ProcessGroupNCCL) derive
// from c10d::Backend; in 1.13 they are ProcessGroups themselves. Both declare the same
// allreduce/broadcast signatures returning c10::intrusive_ptr<Work>.
#if TORCH_VERSION_MAJOR >= 2
using BackendBase = c10d::Backend;
#else
using BackendBase = c10d::ProcessGroup;
#endif

// An integer environment variable in [lo, hi], or `fallback` when unset or empty.
int env_int(const char * name, int fallback, long lo, long hi) {
    const char * v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char * end = nullptr;
    errno = 0;
    const long n = std::strtol(v, &end, 10);
    CT3_CHECK(errno == 0 && end != v && *end == '\0' && n >= lo && n <= hi, ErrorKind::invalid_argument,
              "environment variable {}='{}' is not an integer in [{}, {}]", name, v, lo, hi);
    return static_cast<int>(n);
}

}  // namespace

DistributedConfig DistributedConfig::from_env() {
    DistributedConfig c;
    c.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
    if (c.world_size > 1) {
        CT3_CHECK(std::getenv("RANK") != nullptr, ErrorKind::invalid_argument,
                  "environment variable RANK is not set but WORLD_SIZE={} (set both, as torchrun does, or use "
                  "`ct3-pretrain train --nproc N`)",
                  c.world_size);
    }
    c.rank = env_int("RANK", 0, 0, c.world_size - 1);
    c.local_rank = env_int("LOCAL_RANK", c.rank, 0, 1 << 16);
    if (const char * addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') c.master_addr = addr;
    c.master_port = env_int("MASTER_PORT", c.master_port, 1, 65535);
    if (const char * t = std::getenv("CT3_DIST_TIMEOUT_S"); t != nullptr && *t != '\0') {
        char * end = nullptr;
        c.timeout_s = std::strtod(t, &end);
        CT3_CHECK(end != t && *end == '\0' && c.timeout_s > 0, ErrorKind::invalid_argument,
                  "environment variable CT3_DIST_TIMEOUT_S='{}' is not a positive number of seconds", t);
    }
    return c;
}

struct DataParallel::Impl {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<BackendBase> group;
};

bool DataParallel::backend_available(const c10::Device & device) {
#ifdef CT3_HAVE_NCCL
    if (device.is_cuda()) return true;
#endif
#ifdef CT3_HAVE_GLOO
    if (device.is_cpu()) return true;
#endif
    (void)device;
    return false;
}

DataParallel::DataParallel(const DistributedConfig & config, const c10::Device & device)
    : config_(config), device_(device) {
    if (config_.world_size <= 1) return;  // one process: no c10d objects at all
    CT3_CHECK(backend_available(device), ErrorKind::unsupported,
              "data parallel on {} needs c10d's {} backend, which this build lacks ({})", device.str(),
              device.is_cuda() ? "nccl" : "gloo",
              device.is_cuda() ? "libtorch with CUDA and nccl.h at build time"
                               : "install libgloo-dev (Debian) and rebuild");
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config_.timeout_s * 1000));
    const std::string where = fmt::format("{}:{}", config_.master_addr, config_.master_port);
    auto log = logger("pretrain");
    impl_ = std::make_unique<Impl>();
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(config_.master_port);
        so.isServer = config_.rank == 0;
        so.numWorkers = static_cast<size_t>(config_.world_size);
        so.waitWorkers = true;
        so.timeout = timeout;
        impl_->store = c10::make_intrusive<c10d::TCPStore>(config_.master_addr, so);
    } catch (const std::exception & e) {
        fail_hint(ErrorKind::unavailable,
                  "start every rank with the same MASTER_ADDR/MASTER_PORT; CT3_DIST_TIMEOUT_S raises the limit",
                  "rank {} of {}: no rendezvous at {} within {} s ({}): {}", config_.rank, config_.world_size, where,
                  config_.timeout_s, config_.rank == 0 ? "serving the store" : "connecting to rank 0's store",
                  e.what());
    }
    try {
        if (device.is_cuda()) {
#ifdef CT3_HAVE_NCCL
            // NCCL binds a communicator to the current device: make it this rank's GPU first.
            c10::impl::getDeviceGuardImpl(c10::kCUDA)->setDevice(device);
            auto options = c10d::ProcessGroupNCCL::Options::create();
            options->timeout = timeout;
            impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, config_.rank,
                                                                       config_.world_size, options);
#endif
        } else {
#ifdef CT3_HAVE_GLOO
            auto options = c10d::ProcessGroupGloo::Options::create(timeout);
            // One host: loopback needs no resolvable hostname (containers often lack one).
            options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
            impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, config_.rank,
                                                                       config_.world_size, options);
#endif
        }
    } catch (const std::exception & e) {
        fail(ErrorKind::unavailable, "rank {} of {}: creating the {} process group (store {}) failed: {}", config_.rank,
             config_.world_size, device.is_cuda() ? "nccl" : "gloo", where, e.what());
    }
    CT3_CHECK(impl_->group, ErrorKind::internal, "no c10d process group for {}", device.str());
    log->info("data parallel: rank {} of {} (local rank {}) on {} through {}, store {}", config_.rank,
              config_.world_size, config_.local_rank, device.str(), device.is_cuda() ? "nccl" : "gloo", where);
}

DataParallel::~DataParallel() = default;

void DataParallel::allreduce_sum(at::Tensor & tensor, const char * what) {
    try {
        std::vector<at::Tensor> tensors{tensor};
        impl_->group->allreduce(tensors, c10d::AllreduceOptions())->wait();  // SUM
    } catch (const std::exception & e) {
        fail(ErrorKind::unavailable,
             "rank {} of {}: all-reduce of {} failed (a peer process died or stalled for {} s?): {}", config_.rank,
             config_.world_size, what, config_.timeout_s, e.what());
    }
}

void DataParallel::broadcast_parameters(const std::vector<at::Tensor> & params) {
    if (!active()) return;
    torch::NoGradGuard no_grad;
    for (const at::Tensor & p : params) {
        CT3_CHECK(p.is_contiguous(), ErrorKind::internal, "broadcast of a non-contiguous parameter");
        try {
            std::vector<at::Tensor> tensors{p};
            c10d::BroadcastOptions options;
            options.rootRank = 0;
            impl_->group->broadcast(tensors, options)->wait();
        } catch (const std::exception & e) {
            fail(ErrorKind::unavailable, "rank {} of {}: broadcast of the parameters from rank 0 failed: {}",
                 config_.rank, config_.world_size, e.what());
        }
    }
}

void DataParallel::average_gradients(const std::vector<at::Tensor> & params, int64_t bucket_bytes) {
    if (!active()) return;
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    grads.reserve(params.size());
    for (const at::Tensor & p : params) {
        // Every rank must reduce the same list: a parameter without a gradient contributes zeros.
        if (!p.grad().defined()) const_cast<at::Tensor &>(p).mutable_grad() = torch::zeros_like(p);
        grads.push_back(p.grad());
    }
    const double scale = 1.0 / static_cast<double>(config_.world_size);
    // Buckets of consecutive gradients of one dtype: a few large all-reduces instead of one per
    // tensor (latency), at the cost of one copy in and out.
    size_t first = 0;
    while (first < grads.size()) {
        size_t end = first + 1;
        int64_t bytes = grads[first].numel() * static_cast<int64_t>(grads[first].element_size());
        while (end < grads.size() && grads[end].scalar_type() == grads[first].scalar_type() &&
               bytes + grads[end].numel() * static_cast<int64_t>(grads[end].element_size()) <= bucket_bytes) {
            bytes += grads[end].numel() * static_cast<int64_t>(grads[end].element_size());
            ++end;
        }
        if (end == first + 1 && grads[first].is_contiguous()) {
            allreduce_sum(grads[first], "the gradients");
            grads[first].mul_(scale);
        } else {
            std::vector<at::Tensor> flat_parts;
            flat_parts.reserve(end - first);
            for (size_t i = first; i < end; ++i) flat_parts.push_back(grads[i].reshape({-1}));
            at::Tensor flat = torch::cat(flat_parts);
            allreduce_sum(flat, "the gradients");
            flat.mul_(scale);
            int64_t offset = 0;
            for (size_t i = first; i < end; ++i) {
                const int64_t n = grads[i].numel();
                grads[i].copy_(flat.slice(0, offset, offset + n).view(grads[i].sizes()));
                offset += n;
            }
        }
        first = end;
    }
}

at::Tensor DataParallel::sum(const at::Tensor & value) {
    at::Tensor t = value.detach().clone().contiguous();
    if (active()) allreduce_sum(t, "a metric");
    return t;
}

at::Tensor DataParallel::average(const at::Tensor & value) {
    at::Tensor t = sum(value);
    if (active()) t.div_(static_cast<double>(config_.world_size));
    return t;
}

bool DataParallel::any(bool flag) {
    if (!active()) return flag;
    at::Tensor t = torch::full({1}, flag ? 1.0f : 0.0f, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    allreduce_sum(t, "a flag");
    return t.item<float>() > 0.5f;  // .item() waits for the result on the host
}

void DataParallel::barrier() {
    // An all-reduce read back on the host: unlike c10d's barrier() it needs no device guess on NCCL
    // and blocks the host until every rank has arrived.
    if (active()) any(false);
}

}  // namespace ct3::pretrain

namespace ct3::pretrain {

namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void on_launcher_signal(int sig) { g_forward_signal.store(sig); }

// A TCP port free on loopback now (the kernel's pick; released before rank 0 binds it again).
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CT3_CHECK(fd >= 0, ErrorKind::io, "socket(): {}", std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0;
    const int err = errno;
    ::close(fd);
    CT3_CHECK(ok, ErrorKind::io, "no free TCP port on 127.0.0.1: {}", std::strerror(err));
    return ntohs(addr.sin_port);
}

}  // namespace

int launch_local(int nproc, const std::vector<std::string> & args, double timeout_s) {
    CT3_CHECK(nproc >= 1, ErrorKind::invalid_argument, "--nproc must be >= 1 (got {})", nproc);
    auto log = logger("pretrain");
    const int port = free_port();
    std::vector<std::string> argv_storage;
    argv_storage.push_back("/proc/self/exe");
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (std::string & a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    g_forward_signal.store(0);
    struct sigaction sa {}, old_int {}, old_term {};
    sa.sa_handler = on_launcher_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: waitpid returns EINTR and the signal is forwarded at once
    ::sigaction(SIGINT, &sa, &old_int);
    ::sigaction(SIGTERM, &sa, &old_term);

    std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
    for (int r = 0; r < nproc; ++r) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            // The child: the rank's environment, default signal handling, then the program again.
            ::sigaction(SIGINT, &old_int, nullptr);
            ::sigaction(SIGTERM, &old_term, nullptr);
            ::setenv("RANK", std::to_string(r).c_str(), 1);
            ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
            ::setenv("MASTER_ADDR", "127.0.0.1", 1);
            ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
            ::execv(argv[0], argv.data());
            std::fprintf(stderr, "ct3-pretrain: rank %d: exec /proc/self/exe failed: %s\n", r, std::strerror(errno));
            ::_exit(127);
        }
        if (pid < 0) {
            const int err = errno;
            for (pid_t p : pids) {
                if (p > 0) ::kill(p, SIGKILL), ::waitpid(p, nullptr, 0);
            }
            fail(ErrorKind::io, "fork of rank {}: {}", r, std::strerror(err));
        }
        pids[static_cast<size_t>(r)] = pid;
    }
    log->info("launched {} ranks (pids {}..{}), rendezvous 127.0.0.1:{}", nproc, pids.front(), pids.back(), port);

    auto kill_all = [&](int sig) {
        for (pid_t p : pids) {
            if (p > 0) ::kill(p, sig);
        }
    };
    const auto start = std::chrono::steady_clock::now();
    int first_failure = 0, running = nproc;
    while (running > 0) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, timeout_s > 0 ? WNOHANG : 0);
        if (pid == 0 || (pid < 0 && errno == EINTR)) {
            if (const int sig = g_forward_signal.exchange(0); sig != 0) kill_all(sig);
            if (timeout_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
                log->error("the ranks did not finish within {} s: killing them", timeout_s);
                kill_all(SIGKILL);
                if (first_failure == 0) first_failure = 124;
                timeout_s = 0;  // now wait for the kills to land
            }
            if (pid == 0) ::usleep(20000);
            continue;
        }
        if (pid < 0) break;  // ECHILD: nothing left
        const auto it = std::find(pids.begin(), pids.end(), pid);
        if (it == pids.end()) continue;
        const int rank = static_cast<int>(it - pids.begin());
        *it = -1;
        --running;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code == 0) continue;
        if (code == 130) {  // stopped by a signal after the common checkpoint: let the others finish theirs
            if (first_failure == 0) first_failure = 130;
            continue;
        }
        if (first_failure == 0 || first_failure == 130) {
            first_failure = code;
            log->error("rank {} failed (exit status {}): stopping the other ranks", rank, code);
            kill_all(SIGKILL);
        }
    }
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    return first_failure;
}

}  // namespace ct3::pretrain
