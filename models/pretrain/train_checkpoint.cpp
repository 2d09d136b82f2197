#include "models/pretrain/train_checkpoint.h"

#include <fmt/ranges.h>
#include <torch/torch.h>

#include "kb/kb_files.h"
#include "models/adamw.h"
#include "models/error.h"
#include "models/pretrain/hf_export.h"
#include "models/pretrain/packed_loader.h"
#include "models/safetensors.h"
#include "models/strict_json.h"

namespace fs = std::filesystem;

namespace ct3::pretrain {

namespace {

const char * kCheckpoint = "checkpoint";
const char * kCheckpointNew = "checkpoint.new";
const char * kCheckpointOld = "checkpoint.old";

// The complete checkpoint folder: checkpoint/, or checkpoint.old/ when a kill hit between the two
// renames of save_checkpoint.
std::optional<fs::path> checkpoint_dir(const fs::path & run_dir) {
    for (const char * name : {kCheckpoint, kCheckpointOld}) {
        if (fs::exists(run_dir / name / "state.json")) return run_dir / name;
    }
    return std::nullopt;
}

// The generators whose state a resumed run needs: the CPU one and, on CUDA, the device's.
std::vector<std::pair<std::string, at::Generator>> generators(const c10::Device & device) {
    std::vector<std::pair<std::string, at::Generator>> out;
    out.emplace_back("rng.cpu", at::globalContext().defaultGenerator(c10::Device(c10::kCPU)));
    if (device.is_cuda()) out.emplace_back("rng.cuda", at::globalContext().defaultGenerator(device));
    return out;
}

}  // namespace

void write_run_files(const fs::path & run_dir, const PretrainModelConfig & config, const TrainOptions & options) {
    kb::write_file_atomic(run_dir / "config.json", config.config_json("float32").dump(2) + "\n");
    kb::write_file_atomic(run_dir / "train_options.json", to_json(options).dump(2) + "\n");
}

void check_same_model(const fs::path & run_dir, const PretrainModelConfig & config) {
    const fs::path path = run_dir / "config.json";
    const nlohmann::json saved = nlohmann::json::parse(kb::read_whole_file(path, "run config"));
    const nlohmann::json now = config.config_json("float32");
    for (auto it = now.begin(); it != now.end(); ++it) {
        if (!saved.contains(it.key()) || saved.at(it.key()) != it.value()) {
            fail_hint(ErrorKind::invalid_argument, "pass the original model flags, or --restart to start over",
                      "{}: '{}' is {} in the run but {} now", path.string(), it.key(),
                      saved.contains(it.key()) ? saved.at(it.key()).dump() : "absent", it.value().dump());
        }
    }
}

std::optional<CheckpointState> load_checkpoint_state(const fs::path & run_dir) {
    const std::optional<fs::path> dir = checkpoint_dir(run_dir);
    if (!dir) return std::nullopt;
    const fs::path state_path = *dir / "state.json";
    const std::string source = state_path.string();
    CheckpointState s;
    try {
        const nlohmann::json j = nlohmann::json::parse(kb::read_whole_file(state_path, "checkpoint state"));
        s.step = j.at("step").get<int64_t>();
        s.tokens = j.at("tokens").get<int64_t>();
        s.elapsed_s = j.at("elapsed_s").get<double>();
        s.loader = j.at("loader");
        s.options = train_options_from_json(j.at("options"), source);
    } catch (const nlohmann::json::exception & e) {
        fail_hint(ErrorKind::bad_format, "--restart discards the run", "{}: {}", source, e.what());
    }
    return s;
}

void restore_checkpoint(const fs::path & run_dir, const CheckpointState & state, torch::nn::Module & model,
                        AdamW & optimizer, PackedLoader & loader, const c10::Device & device) {
    const fs::path dir = *checkpoint_dir(run_dir);
    torch::NoGradGuard no_grad;
    {
        auto file = SafetensorsFile::open(dir / "model.safetensors");
        for (auto & p : model.named_parameters(/*recurse=*/true)) {
            CT3_CHECK(file->contains(p.key()), ErrorKind::bad_format, "{}: tensor '{}' is missing",
                      file->path().string(), p.key());
            at::Tensor value = file->load(p.key());
            CT3_CHECK(value.sizes() == p.value().sizes(), ErrorKind::bad_format,
                      "{}: tensor '{}' has shape [{}] (expected [{}]): checkpoint of another model?",
                      file->path().string(), p.key(), fmt::join(value.sizes(), ", "), fmt::join(p.value().sizes(), ", "));
            p.value().copy_(value);
        }
    }
    auto file = SafetensorsFile::open(dir / "optimizer.safetensors");
    std::map<std::string, at::Tensor> opt_state;
    for (const TensorInfo & info : file->tensors()) {
        if (info.name.rfind("rng.", 0) != 0) opt_state[info.name] = file->load(info.name);
    }
    optimizer.load_state(opt_state, file->path().string());
    for (auto & [name, gen] : generators(device)) {
        if (!file->contains(name)) continue;  // a checkpoint written on CPU resumed on CUDA: fresh device RNG
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(file->load(name));
    }
    loader.restore(LoaderState::from_json(state.loader));
}

void save_checkpoint(const fs::path & run_dir, const CheckpointState & state, torch::nn::Module & model,
                     const AdamW & optimizer, const PackedLoader & loader, const c10::Device & device) {
    const fs::path fresh = run_dir / kCheckpointNew;
    fs::remove_all(fresh);
    fs::create_directories(fresh);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto & p : model.named_parameters(/*recurse=*/true)) tensors.emplace_back(p.key(), p.value());
    save_safetensors(fresh / "model.safetensors", tensors);
    tensors.clear();
    for (const auto & [name, t] : optimizer.state()) tensors.emplace_back(name, t);
    for (auto & [name, gen] : generators(device)) {
        std::lock_guard<std::mutex> lock(gen.mutex());
        tensors.emplace_back(name, gen.get_state());
    }
    save_safetensors(fresh / "optimizer.safetensors", tensors);
    const nlohmann::json j = {{"step", state.step},
                              {"tokens", state.tokens},
                              {"elapsed_s", state.elapsed_s},
                              {"loader", loader.state().to_json()},
                              {"options", to_json(state.options)}};
    kb::write_file_atomic(fresh / "state.json", j.dump(2) + "\n");
    kb::fsync_path(fresh);
    // Swap: checkpoint -> checkpoint.old, checkpoint.new -> checkpoint, then drop the old one. A kill
    // between the renames leaves checkpoint.old complete, which load_checkpoint_state falls back to.
    const fs::path current = run_dir / kCheckpoint, old = run_dir / kCheckpointOld;
    fs::remove_all(old);
    if (fs::exists(current)) fs::rename(current, old);
    fs::rename(fresh, current);
    kb::fsync_path(run_dir);
    fs::remove_all(old);
}

void discard_checkpoint(const fs::path & run_dir) {
    for (const char * name : {kCheckpoint, kCheckpointNew, kCheckpointOld}) fs::remove_all(run_dir / name);
    for (const char * name : {"config.json", "train_options.json", "train_log.jsonl", "train_log.csv", "loss.svg"}) {
        fs::remove(run_dir / name);
    }
}

}  // namespace ct3::pretrain
