// Language models of TTT layers (models/ttt_model.h): the named configs have the reference's
// parameter counts (ttt_layers.md §2.1), the shape formula equals the built modules, both backbones
// are causal, the dual and primal forms agree through the whole model, and a tiny model overfits a
// tiny corpus.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/error.h"
#include "models/ttt_model.h"

namespace {

int64_t count(torch::nn::Module & m) {
    int64_t n = 0;
    for (const auto & p : m.parameters()) n += p.numel();
    return n;
}

ct3::TTTModelConfig tiny(const std::string & type, const std::string & backbone) {
    ct3::TTTModelConfig c;
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.intermediate_size = 48;
    c.mini_batch_size = 4;
    c.ttt_layer_type = type;
    c.backbone = backbone;
    c.ttt_base_lr = ct3::TTTModelConfig::reference_base_lr(type);
    return c;
}

}  // namespace

TEST(TTTModel, NamedConfigsHaveTheReferenceParameterCounts) {
    // ttt_layers.md §2.1, derived for the Mamba backbone with tied embeddings (millions, 1 decimal).
    const std::vector<std::tuple<std::string, double, double>> expected = {
        {"125m", 110.4, 114.6}, {"350m", 337.7, 348.8}, {"760m", 733.6, 758.5}, {"1.3b", 1285.6, 1307.9}};
    for (const auto & [size, linear, mlp] : expected) {
        EXPECT_NEAR(ct3::TTTModelConfig::named(size, "linear").parameter_count() / 1e6, linear, 0.05) << size;
        EXPECT_NEAR(ct3::TTTModelConfig::named(size, "mlp").parameter_count() / 1e6, mlp, 0.05) << size;
    }
    EXPECT_EQ(ct3::TTTModelConfig::named("760m").layer_config().head_dim(), 96);
    EXPECT_DOUBLE_EQ(ct3::TTTModelConfig::named("125m", "mlp").ttt_base_lr, 0.1);
    EXPECT_THROW(ct3::TTTModelConfig::named("7b"), ct3::Error);
    EXPECT_THROW(ct3::TTTModelConfig::named("125m", "linear", "rwkv"), ct3::Error);
}

TEST(TTTModel, BuiltModulesMatchTheShapeFormula) {
    for (const char * backbone : {"mamba", "llama"}) {
        for (const char * type : {"linear", "mlp"}) {
            ct3::TTTForCausalLM model(tiny(type, backbone));
            EXPECT_EQ(count(*model), model->config().parameter_count()) << backbone << " " << type;
        }
    }
    // The real 125M TTT-Linear, built: 110.4M parameters.
    ct3::TTTForCausalLM m125(ct3::TTTModelConfig::named("125m", "linear"));
    EXPECT_EQ(count(*m125), m125->config().parameter_count());
    EXPECT_NEAR(count(*m125) / 1e6, 110.4, 0.05);
}

TEST(TTTModel, CausalAndDualEqualsPrimalOnBothBackbones) {
    for (const char * backbone : {"mamba", "llama"}) {
        for (const char * type : {"linear", "mlp"}) {
            torch::manual_seed(11);
            ct3::TTTForCausalLM model(tiny(type, backbone));
            model->to(torch::kFloat64);
            torch::NoGradGuard no_grad;
            at::Tensor ids = torch::randint(0, 64, {2, 11}, torch::kInt64);  // 2 full mini-batches + 3
            at::Tensor dual = model->forward(ids, ct3::TTTMode::dual);
            at::Tensor primal = model->forward(ids, ct3::TTTMode::primal);
            ASSERT_EQ(dual.sizes(), (std::vector<int64_t>{2, 11, 64}));
            EXPECT_LE((dual - primal).abs().max().item<double>(), 1e-9) << backbone << " " << type;
            at::Tensor changed = ids.clone();
            changed.slice(1, 6).random_(0, 64);
            at::Tensor after = model->forward(changed, ct3::TTTMode::dual);
            EXPECT_EQ((after.slice(1, 0, 6) - dual.slice(1, 0, 6)).abs().max().item<double>(), 0.0)
                << backbone << " " << type << ": outputs before the change moved";
            EXPECT_GT((after.slice(1, 6) - dual.slice(1, 6)).abs().max().item<double>(), 0.0);
        }
    }
}

TEST(TTTModel, TinyModelOverfitsATinyCorpus) {
    for (const char * backbone : {"mamba", "llama"}) {
        torch::manual_seed(5);
        ct3::TTTForCausalLM model(tiny("linear", backbone));
        torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3));
        // One fixed 16-token pattern, twice: the second copy is predictable from the first.
        at::Tensor pattern = torch::randint(0, 64, {1, 16}, torch::kInt64);
        at::Tensor ids = torch::cat({pattern, pattern}, 1);
        auto loss_of = [&]() {
            at::Tensor logits = model->forward(ids.slice(1, 0, 31));
            return torch::nn::functional::cross_entropy(logits.reshape({-1, 64}), ids.slice(1, 1, 32).reshape({-1}));
        };
        const double first = loss_of().item<double>();
        for (int step = 0; step < 80; ++step) {
            opt.zero_grad();
            at::Tensor loss = loss_of();
            loss.backward();
            opt.step();
        }
        const double last = loss_of().item<double>();
        EXPECT_NEAR(first, std::log(64.0), 0.5) << backbone;
        EXPECT_LT(last, 0.3 * first) << backbone << ": " << first << " -> " << last;
    }
}
