// LoRA test-time training against peft + torch AdamW (fixtures: tests/tools/make_lora_golden.py on the
// GPU machine, CPU float32): first-step LoRA gradients (batch 1 and a padded batch of 2), the losses
// of a 10-step TTT loop, the trained adapter, and PEFT-format interchange in both directions.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "client/lora.h"
#include "client/peft_adapter.h"
#include "client/ttt_trainer.h"
#include "models/llama.h"
#include "models/llama_loader.h"
#include "models/safetensors.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace ct3::client;

namespace {

const fs::path & golden_dir() {
    static const fs::path dir = ct3::test::data_dir() / "lora_golden";
    return dir;
}

struct Golden {
    nlohmann::json json;
    std::shared_ptr<ct3::SafetensorsFile> tensors;
    static const Golden & get() {
        static const Golden g = [] {
            Golden out;
            out.json = nlohmann::json::parse(ct3::test::read_file(golden_dir() / "golden.json"));
            out.tensors = ct3::SafetensorsFile::open(golden_dir() / "golden.safetensors");
            return out;
        }();
        return g;
    }
    at::Tensor tensor(const std::string & name) const { return tensors->load(name); }
};

// allclose with rtol and an absolute floor relative to the reference's scale.
void expect_close(const at::Tensor & actual, const at::Tensor & expected, double rtol, const std::string & what) {
    ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
    const double scale = expected.abs().max().item<double>();
    const double atol = rtol * std::max(scale, 1e-12);
    const bool ok = torch::allclose(actual.to(torch::kFloat32).cpu(), expected, rtol, atol);
    EXPECT_TRUE(ok) << what << ": max abs diff " << (actual.cpu() - expected).abs().max().item<double>()
                    << " (scale " << scale << ")";
}

at::Tensor probe() {
    auto ids = Golden::get().json["probe"].get<std::vector<int64_t>>();
    return torch::tensor(ids, torch::kInt64).view({1, -1});
}

at::Tensor logits(ct3::LlamaForCausalLMImpl & model) {
    torch::NoGradGuard no_grad;
    return model.forward_tokens(probe(), nullptr)[0];
}

std::vector<TrainSample> samples() {
    std::vector<TrainSample> out;
    for (const auto & s : Golden::get().json["samples"]) {
        TrainSample t;
        t.ids = s.get<std::vector<int32_t>>();
        out.push_back(t);
    }
    return out;
}

struct Fixture {
    ct3::LlamaForCausalLM model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama");
    std::unique_ptr<LoraAdapter> adapter = load_peft_adapter(*model, golden_dir() / "initial_adapter");
};

void expect_grads(const LoraAdapter & adapter, const std::string & prefix) {
    const auto params = adapter.parameters();
    const auto state = adapter.state();
    for (size_t i = 0; i < state.size(); ++i) {
        ASSERT_TRUE(params[i].grad().defined()) << state[i].first;
        // Fixtures from before the script dropped peft's live adapter name keep ".default." in it.
        std::string name = prefix + state[i].first;
        if (!Golden::get().tensors->contains(name)) name.replace(name.rfind(".weight"), 7, ".default.weight");
        expect_close(params[i].grad(), Golden::get().tensor(name), 1e-4, name);
    }
}

}  // namespace

TEST(LoraGolden, InitialPeftAdapterIsTheBaseModel) {
    Fixture f;
    EXPECT_EQ(f.adapter->config().r, 8);
    EXPECT_DOUBLE_EQ(f.adapter->config().scaling(), 2.0);
    expect_close(logits(*f.model), Golden::get().tensor("logits/base"), 1e-4, "base logits");
}

TEST(LoraGolden, FirstStepGradientsMatchPeft) {
    Fixture f;
    TrainSample s = samples()[0];
    TrainBatch batch = collate({&s}, 2, 1);
    f.adapter->set_training(true);
    ct3::LMOutput out = f.model->forward_train(batch.input_ids, batch.attention_mask, batch.labels);
    EXPECT_NEAR(out.loss.item<double>(), Golden::get().json["losses"][0].get<double>(), 1e-4);
    out.loss.backward();
    expect_grads(*f.adapter, "grad/");
}

TEST(LoraGolden, PaddedBatchGradientsMatchPeft) {
    Fixture f;
    auto all = samples();
    TrainBatch batch = collate({&all[0], &all[2]}, 2, 8);
    EXPECT_EQ(batch.input_ids.size(1) % 8, 0);
    ct3::LMOutput out = f.model->forward_train(batch.input_ids, batch.attention_mask, batch.labels);
    EXPECT_NEAR(out.loss.item<double>(), Golden::get().json["batch2_loss"].get<double>(), 1e-4);
    out.loss.backward();
    expect_grads(*f.adapter, "batch2_grad/");
}

TEST(LoraGolden, TttLoopLossesAndTrainedAdapterMatchPeftAndAdamW) {
    Fixture f;
    const auto & opts = Golden::get().json["options"];
    TTTOptions options;
    options.learning_rate = opts["lr"].get<double>();
    options.weight_decay = opts["weight_decay"].get<double>();
    options.max_grad_norm = opts["max_grad_norm"].get<double>();
    options.num_epochs = opts["num_epochs"].get<int>();
    options.pad_to_multiple_of = 1;  // batch 1: the collator adds nothing that changes the loss
    TrainReport report = fine_tune(*f.model, *f.adapter, samples(), 2, options);
    const auto expected = Golden::get().json["losses"].get<std::vector<double>>();
    ASSERT_EQ(report.losses.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        EXPECT_NEAR(report.losses[i], expected[i], 1e-4 * std::abs(expected[i])) << "step " << i;
    }
    AdapterTensors trained = read_peft_tensors(golden_dir() / "trained_adapter");
    std::map<std::string, at::Tensor> by_name(trained.begin(), trained.end());
    for (const auto & [name, t] : f.adapter->state()) expect_close(t, by_name.at(name), 1e-3, name);
    expect_close(logits(*f.model), Golden::get().tensor("logits/trained"), 1e-4, "trained logits");
}

TEST(LoraGolden, PeftWrittenAdapterLoadsWithTheSameLogits) {
    auto model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama");
    auto adapter = load_peft_adapter(*model, golden_dir() / "trained_adapter");
    expect_close(logits(*model), Golden::get().tensor("logits/trained"), 1e-4, "peft-trained adapter logits");
}

TEST(LoraGolden, Ct3WrittenAdapterLoadsInPeftWithTheSameLogits) {
    // tests/data/lora_golden/ct3_adapter was written by save_peft_adapter (client_lora_test's fixture
    // writer); peft loaded it on the GPU machine and recorded its logits.
    auto model = ct3::load_llama(ct3::test::data_dir() / "tiny_llama");
    auto adapter = load_peft_adapter(*model, golden_dir() / "ct3_adapter");
    expect_close(logits(*model), Golden::get().tensor("logits/ct3_adapter"), 1e-4, "ct3 adapter logits in peft");
    // And it is not trivially the base model.
    EXPECT_FALSE(torch::allclose(logits(*model), Golden::get().tensor("logits/base"), 1e-3, 1e-3));
}
