#include "models/pretrain/train_options.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "models/error.h"
#include "models/log.h"

namespace ct3::pretrain {

void TrainOptions::validate() const {
    auto positive = [](int64_t v, const char * name) {
        CT3_CHECK(v > 0, ErrorKind::invalid_argument, "--{} must be > 0 (got {})", name, v);
    };
    positive(seq_len, "seq_len");
    positive(micro_batch, "micro_batch");
    positive(grad_accum, "grad_accum");
    positive(world_size, "nproc");
    positive(max_steps, "max_steps");
    CT3_CHECK(warmup_steps >= 0 && warmup_steps <= max_steps, ErrorKind::invalid_argument,
              "--warmup_steps must be in [0, max_steps={}] (got {})", max_steps, warmup_steps);
    CT3_CHECK(lr > 0 && std::isfinite(lr), ErrorKind::invalid_argument, "--lr must be > 0 (got {})", lr);
    CT3_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, ErrorKind::invalid_argument,
              "--min_lr_ratio must be in [0, 1] (got {})", min_lr_ratio);
    CT3_CHECK(weight_decay >= 0, ErrorKind::invalid_argument, "--weight_decay must be >= 0 (got {})", weight_decay);
    CT3_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, ErrorKind::invalid_argument,
              "--beta1/--beta2 must be in [0, 1) (got {}, {})", beta1, beta2);
    CT3_CHECK(eps > 0, ErrorKind::invalid_argument, "--eps must be > 0 (got {})", eps);
    CT3_CHECK(eval_every >= 0 && eval_batches >= 0 && checkpoint_every >= -1, ErrorKind::invalid_argument,
              "--eval_every and --eval_batches must be >= 0, --checkpoint_every >= -1");
    positive(log_every, "log_every");
    CT3_CHECK(precision == "auto" || precision == "bf16" || precision == "fp32", ErrorKind::invalid_argument,
              "--precision must be auto, bf16 or fp32 (got '{}')", precision);
}

nlohmann::json to_json(const TrainOptions & o) {
    return {{"train_data", o.train_data.string()},
            {"held_out_data", o.held_out_data.string()},
            {"seq_len", o.seq_len},
            {"micro_batch", o.micro_batch},
            {"grad_accum", o.grad_accum},
            {"max_steps", o.max_steps},
            {"warmup_steps", o.warmup_steps},
            {"lr", o.lr},
            {"min_lr_ratio", o.min_lr_ratio},
            {"weight_decay", o.weight_decay},
            {"beta1", o.beta1},
            {"beta2", o.beta2},
            {"eps", o.eps},
            {"grad_clip", o.grad_clip},
            {"eval_every", o.eval_every},
            {"eval_batches", o.eval_batches},
            {"checkpoint_every", o.checkpoint_every},
            {"log_every", o.log_every},
            {"seed", o.seed},
            {"device", o.device},
            {"precision", o.precision},
            {"peak_tflops", o.peak_tflops},
            {"world_size", o.world_size}};
}

TrainOptions train_options_from_json(const nlohmann::json & j, const std::string & source) {
    TrainOptions o;
    try {
        o.train_data = j.at("train_data").get<std::string>();
        o.held_out_data = j.at("held_out_data").get<std::string>();
        o.seq_len = j.at("seq_len").get<int64_t>();
        o.micro_batch = j.at("micro_batch").get<int64_t>();
        o.grad_accum = j.at("grad_accum").get<int64_t>();
        o.max_steps = j.at("max_steps").get<int64_t>();
        o.warmup_steps = j.at("warmup_steps").get<int64_t>();
        o.lr = j.at("lr").get<double>();
        o.min_lr_ratio = j.at("min_lr_ratio").get<double>();
        o.weight_decay = j.at("weight_decay").get<double>();
        o.beta1 = j.at("beta1").get<double>();
        o.beta2 = j.at("beta2").get<double>();
        o.eps = j.at("eps").get<double>();
        o.grad_clip = j.at("grad_clip").get<double>();
        o.eval_every = j.at("eval_every").get<int64_t>();
        o.eval_batches = j.at("eval_batches").get<int64_t>();
        o.checkpoint_every = j.at("checkpoint_every").get<int64_t>();
        o.log_every = j.at("log_every").get<int64_t>();
        o.seed = j.at("seed").get<uint64_t>();
        o.device = j.at("device").get<std::string>();
        o.precision = j.at("precision").get<std::string>();
        o.peak_tflops = j.at("peak_tflops").get<double>();
        o.world_size = j.value("world_size", int64_t{1});  // runs from before data parallel had one process
    } catch (const nlohmann::json::exception & e) {
        fail(ErrorKind::bad_format, "{}: training options: {}", source, e.what());
    }
    return o;
}

void check_resumable(const TrainOptions & saved, const TrainOptions & now, const std::string & source) {
    const nlohmann::json a = to_json(saved), b = to_json(now);
    for (const char * key : {"train_data", "held_out_data", "seq_len", "micro_batch", "grad_accum", "warmup_steps",
                             "lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "eps", "grad_clip", "seed",
                             "precision", "world_size"}) {
        if (a.at(key) != b.at(key)) {
            fail_hint(ErrorKind::invalid_argument,
                      std::string(key) == "world_size"
                          ? "world_size is the number of processes (--nproc or WORLD_SIZE): start as many as before, "
                            "or --restart to start over"
                          : "pass the original value, or --restart to start over",
                      "{}: --{} was {} when this run started, now {}: a resumed run must continue the same "
                      "computation",
                      source, key, a.at(key).dump(), b.at(key).dump());
        }
    }
    if (saved.max_steps != now.max_steps) {
        logger("pretrain")->warn("{}: --max_steps changed from {} to {}: the cosine schedule is stretched from here on",
                                 source, saved.max_steps, now.max_steps);
    }
}

double learning_rate_at(const TrainOptions & o, int64_t step) {
    if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    const double min_lr = o.lr * o.min_lr_ratio;
    const int64_t decay_steps = o.max_steps - o.warmup_steps;
    if (decay_steps <= 0 || step >= o.max_steps) return min_lr;
    const double progress = static_cast<double>(step - o.warmup_steps) / static_cast<double>(decay_steps);
    const double pi = std::acos(-1.0);
    return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(pi * progress));
}

}  // namespace ct3::pretrain
