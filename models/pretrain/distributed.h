// Data parallelism over the processes of one host through libtorch's c10d: one process per GPU with
// NCCL, or several CPU processes with Gloo (what CI tests). Every rank holds the whole model, trains
// on its rows of the global batch (PackedLoader rank/world_size), and averages the gradients before
// each optimizer step, so all ranks apply the same update and stay identical.
//
// Rendezvous is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
// environment; rank 0 serves the c10d TCPStore on MASTER_ADDR:MASTER_PORT, the others connect to it.
// CT3_DIST_TIMEOUT_S (default 300) bounds the rendezvous and every collective, so a peer that never
// connects or dies ends the job with an error naming the rank and the address instead of a hang.
//
// Without WORLD_SIZE (or WORLD_SIZE=1) DataParallel is a no-op holding no c10d objects.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace ct3::pretrain {

struct DistributedConfig {
    int rank = 0, world_size = 1, local_rank = 0;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    double timeout_s = 300;  // rendezvous and collectives

    // From RANK, WORLD_SIZE, LOCAL_RANK (default RANK), MASTER_ADDR, MASTER_PORT and
    // CT3_DIST_TIMEOUT_S; unset WORLD_SIZE means one process. Throws invalid_argument naming the
    // variable when a value is malformed or out of range.
    static DistributedConfig from_env();
};

class DataParallel {
public:
    // Joins the process group: gloo for a CPU device, nccl for CUDA (device = this rank's GPU).
    // Throws unavailable (naming the rank and MASTER_ADDR:MASTER_PORT) when the rendezvous times out,
    // unsupported when this libtorch build lacks the backend.
    DataParallel(const DistributedConfig & config, const c10::Device & device);
    ~DataParallel();
    DataParallel(const DataParallel &) = delete;
    DataParallel & operator=(const DataParallel &) = delete;

    int rank() const { return config_.rank; }
    int world_size() const { return config_.world_size; }
    bool is_main() const { return config_.rank == 0; }
    bool active() const { return config_.world_size > 1; }
    const DistributedConfig & config() const { return config_; }

    // Copies rank 0's values into every rank's tensors (in place; the same list on every rank).
    void broadcast_parameters(const std::vector<at::Tensor> & params);
    // All-reduces the parameters' gradients to their mean over ranks, in buckets of up to
    // bucket_bytes (an undefined gradient counts as zeros and becomes defined).
    void average_gradients(const std::vector<at::Tensor> & params, int64_t bucket_bytes = 25 << 20);
    // The mean of a tensor over ranks (a new tensor; the input is untouched).
    at::Tensor average(const at::Tensor & value);
    // The sum over ranks (a new tensor).
    at::Tensor sum(const at::Tensor & value);
    // True on every rank when `flag` is true on any rank (one small all-reduce; synchronises).
    bool any(bool flag);
    void barrier();

    // Whether this libtorch build can run data parallel on `device` (gloo or nccl present).
    static bool backend_available(const c10::Device & device);

private:
    void allreduce_sum(at::Tensor & tensor, const char * what);

    struct Impl;
    DistributedConfig config_;
    c10::Device device_;
    std::unique_ptr<Impl> impl_;
};

// Launches `nproc` ranks of this program on this host: fork + exec of /proc/self/exe with `args`
// (argv[1..]) and RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT (a free port)
// set. Waits for all; when one fails (exit status other than 0 and 130 = interrupted with a
// checkpoint) the others are killed. SIGINT/SIGTERM sent to the launcher are forwarded to the ranks
// (which checkpoint and stop together). Returns the first non-zero exit status (128 + signal for a
// killed rank), 0 when all succeed, 124 when timeout_s > 0 passes first (all ranks killed).
int launch_local(int nproc, const std::vector<std::string> & args, double timeout_s = 0);

}  // namespace ct3::pretrain
