#include "models/ttt_layer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/torch.h>

#include "models/error.h"

namespace F = torch::nn::functional;

namespace ct3 {

namespace {

// The dtype of the inner loop: float64 stays float64 (tests), everything else runs in float32 so the
// inner weights, their accumulated updates and the LayerNorm statistics never round to bf16/fp16
// (the reference trains in fp32; its fp16 kernels drift, §5.1 item 6).
c10::ScalarType compute_dtype(const at::Tensor & hidden) {
    return hidden.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// [B, H, ...] <-> [B·H, ...]: the inner-loop functions batch over (sequence, head) pairs.
at::Tensor flat(const at::Tensor & t, c10::ScalarType dtype) {
    if (!t.defined()) return t;
    std::vector<int64_t> shape{t.size(0) * t.size(1)};
    for (int64_t i = 2; i < t.dim(); ++i) shape.push_back(t.size(i));
    return t.to(dtype).reshape(shape);
}

at::Tensor unflat(const at::Tensor & t, int64_t B) {
    if (!t.defined()) return t;
    std::vector<int64_t> shape{B, t.size(0) / B};
    for (int64_t i = 1; i < t.dim(); ++i) shape.push_back(t.size(i));
    return t.reshape(shape);
}

// A per-head parameter [H, ...] as a per-(sequence, head) tensor [B·H, ...] for the inner loop.
at::Tensor per_row(const at::Tensor & p, int64_t B, c10::ScalarType dtype) {
    std::vector<int64_t> shape{B};
    for (int64_t s : p.sizes()) shape.push_back(s);
    return flat(p.to(dtype).unsqueeze(0).expand(shape), dtype);
}

}  // namespace

void TTTConfig::validate(const std::string & where) const {
    CT3_CHECK(hidden_size > 0, ErrorKind::invalid_argument, "{}: hidden_size must be > 0 (got {})", where, hidden_size);
    CT3_CHECK(num_heads > 0 && hidden_size % num_heads == 0, ErrorKind::invalid_argument,
              "{}: num_heads must be > 0 and divide hidden_size {} (got {})", where, hidden_size, num_heads);
    CT3_CHECK(head_dim() % 2 == 0, ErrorKind::invalid_argument,
              "{}: head_dim = hidden_size / num_heads must be even for RoPE pairs (got {} = {} / {})", where,
              head_dim(), hidden_size, num_heads);
    CT3_CHECK(!share_qk || conv_width >= 1, ErrorKind::invalid_argument, "{}: conv_width must be >= 1 (got {})", where,
              conv_width);
    CT3_CHECK(mini_batch_size >= 1, ErrorKind::invalid_argument, "{}: mini_batch_size must be >= 1 (got {})", where,
              mini_batch_size);
    CT3_CHECK(std::isfinite(ttt_base_lr) && ttt_base_lr > 0, ErrorKind::invalid_argument,
              "{}: ttt_base_lr must be a finite number > 0 (got {})", where, ttt_base_lr);
    CT3_CHECK(ttt_layer_type == "linear" || ttt_layer_type == "mlp", ErrorKind::invalid_argument,
              "{}: ttt_layer_type must be \"linear\" or \"mlp\" (got \"{}\")", where, ttt_layer_type);
    CT3_CHECK(std::isfinite(rope_theta) && rope_theta > 0, ErrorKind::invalid_argument,
              "{}: rope_theta must be a finite number > 0 (got {})", where, rope_theta);
    CT3_CHECK(ttt_norm_eps > 0, ErrorKind::invalid_argument, "{}: ttt_norm_eps must be > 0 (got {})", where,
              ttt_norm_eps);
    CT3_CHECK(post_norm_eps > 0, ErrorKind::invalid_argument, "{}: post_norm_eps must be > 0 (got {})", where,
              post_norm_eps);
    CT3_CHECK(learnable_w0 || !is_mlp(), ErrorKind::invalid_argument,
              "{}: learnable_w0 = false (W0 fixed at zero) needs ttt_layer_type \"linear\": a zero TTT-MLP has zero "
              "inner gradients",
              where);
    CT3_CHECK(initializer_range >= 0, ErrorKind::invalid_argument, "{}: initializer_range must be >= 0 (got {})", where,
              initializer_range);
}

std::pair<at::Tensor, at::Tensor> ttt_rope_tables(const at::Tensor & positions, int64_t d, double theta,
                                                  c10::ScalarType dtype) {
    const int64_t T = positions.numel();
    // Angles in float64 then cast: positions are < b, so this is exact enough for every dtype.
    auto dopts = torch::TensorOptions().dtype(torch::kFloat64).device(positions.device());
    at::Tensor inv_freq = torch::pow(theta, -torch::arange(0, d, 2, dopts) / static_cast<double>(d));  // [d/2]
    at::Tensor angle = positions.to(dopts).view({T, 1, 1}) * inv_freq.view({1, d / 2, 1});
    // The signs by arithmetic, not a host tensor: a host-to-device copy per call would block a GPU stream.
    at::Tensor sin = angle.sin();
    return {angle.cos().expand({T, d / 2, 2}).reshape({T, d}).to(dtype),
            torch::cat({-sin, sin}, -1).reshape({T, d}).to(dtype)};
}

at::Tensor ttt_rope_apply(const at::Tensor & x, const at::Tensor & cos, const at::Tensor & signed_sin) {
    // Pair (x0, x1) -> (x0·cos − x1·sin, x1·cos + x0·sin): x·cos + swap(x)·(−sin, +sin).
    std::vector<int64_t> pair_shape(x.sizes().begin(), x.sizes().end() - 1);
    pair_shape.push_back(x.size(-1) / 2);
    pair_shape.push_back(2);
    at::Tensor swapped = x.reshape(pair_shape).flip(-1).reshape(x.sizes());
    return at::addcmul(x * cos, swapped, signed_sin);
}

at::Tensor ttt_rope_interleaved(const at::Tensor & x, const at::Tensor & positions, double theta) {
    auto [cos, sin] = ttt_rope_tables(positions, x.size(-1), theta, x.scalar_type());
    return ttt_rope_apply(x, cos, sin);
}

CausalConv1dImpl::CausalConv1dImpl(int64_t channels, int64_t width) {
    CT3_CHECK(channels > 0 && width > 0, ErrorKind::invalid_argument,
              "CausalConv1d: channels and width must be > 0 (got {}, {})", channels, width);
    // lecun_normal: N(0, 1/fan_in) with fan_in = width for a depthwise kernel (flax truncates at 2σ;
    // the plain normal is close enough for a from-scratch init).
    weight = register_parameter("weight", torch::randn({channels, 1, width}) / std::sqrt(static_cast<double>(width)));
    bias = register_parameter("bias", torch::zeros({channels}));
}

at::Tensor CausalConv1dImpl::forward(const at::Tensor & x) {
    at::Tensor history;
    return forward_with_history(x, history);
}

at::Tensor CausalConv1dImpl::forward_with_history(const at::Tensor & x, at::Tensor & history) {
    const int64_t width = weight.size(2), B = x.size(0), C = x.size(2);
    CT3_CHECK(!history.defined() || (history.dim() == 3 && history.size(0) == B && history.size(1) == width - 1 &&
                                     history.size(2) == C),
              ErrorKind::invalid_argument, "CausalConv1d: history must be [{}, {}, {}] (got [{}])", B, width - 1, C,
              history.defined() ? fmt::format("{}", fmt::join(history.sizes(), ", ")) : "");
    // The previous inputs take the place of the zero padding of a sequence start.
    at::Tensor past = history.defined() ? history.to(x.scalar_type()) : torch::zeros({B, width - 1, C}, x.options());
    at::Tensor full = torch::cat({past, x}, 1);
    at::Tensor y = F::conv1d(full.transpose(1, 2), weight.to(x.scalar_type()),
                             F::Conv1dFuncOptions().bias(bias.to(x.scalar_type())).groups(C));
    // A copy, not a view: a view would keep the whole chunk (a long prompt) alive in a decoding cache.
    history = full.slice(1, full.size(1) - (width - 1)).clone();
    return y.transpose(1, 2);
}

TTTLayerImpl::TTTLayerImpl(TTTConfig config) : config_(std::move(config)) {
    config_.validate("TTTConfig");
    const int64_t D = config_.hidden_size, H = config_.num_heads, d = config_.head_dim(), f = config_.inner_hidden();
    const double sigma = config_.initializer_range;
    auto linear = [&](const char * name) {
        return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(D, D).bias(false)));
    };
    q_proj = linear("q_proj");
    if (config_.share_qk) {
        conv_q = register_module("conv_q", CausalConv1d(D, config_.conv_width));
        conv_k = register_module("conv_k", CausalConv1d(D, config_.conv_width));
    } else {
        k_proj = linear("k_proj");
    }
    v_proj = linear("v_proj");
    o_proj = linear("o_proj");
    if (config_.use_gate) g_proj = linear("g_proj");
    learnable_ttt_lr_weight = register_parameter("learnable_ttt_lr_weight", torch::randn({H, 1, D}) * sigma);
    learnable_ttt_lr_bias = register_parameter("learnable_ttt_lr_bias", torch::zeros({H, 1}));
    learnable_token_idx = register_parameter("learnable_token_idx", torch::zeros({config_.mini_batch_size}));
    ttt_norm_weight = register_parameter("ttt_norm_weight", torch::ones({H, d}));
    ttt_norm_bias = register_parameter("ttt_norm_bias", torch::zeros({H, d}));
    post_norm =
        register_module("post_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(config_.post_norm_eps)));
    W1 = register_parameter("W1", torch::randn({H, d, f}) * sigma);
    b1 = register_parameter("b1", torch::zeros({H, 1, f}));
    if (config_.is_mlp()) {
        W2 = register_parameter("W2", torch::randn({H, f, d}) * sigma);
        b2 = register_parameter("b2", torch::zeros({H, 1, d}));
    }
    // JAX init (§1.11): every dense projection N(0, 0.02), no biases.
    torch::NoGradGuard no_grad;
    for (auto * lin : {&q_proj, &k_proj, &v_proj, &o_proj, &g_proj}) {
        if (!lin->is_empty()) (*lin)->weight.normal_(0.0, sigma);
    }
}

TTTState TTTLayerImpl::initial_state(int64_t batch, c10::ScalarType dtype) const {
    // expand, not repeat: the learned θ_init is shared by every sequence and its gradient sums over them.
    auto tile = [&](const at::Tensor & p) {
        if (!p.defined()) return at::Tensor();
        std::vector<int64_t> shape{batch};
        for (int64_t s : p.sizes()) shape.push_back(s);
        return p.to(dtype).unsqueeze(0).expand(shape);
    };
    TTTState s;
    if (!config_.learnable_w0) {
        // Theorem 1's W0 = 0: zeros of the parameters' shapes, not tied to them (no gradient).
        s.W1 = torch::zeros_like(tile(W1));
        s.b1 = torch::zeros_like(tile(b1));
        return s;
    }
    s.W1 = tile(W1);
    s.b1 = tile(b1);
    s.W2 = tile(W2);
    s.b2 = tile(b2);
    return s;
}

TTTInputs TTTLayerImpl::project(const at::Tensor & hidden, int64_t offset, at::Tensor * conv_history) {
    const int64_t B = hidden.size(0), T = hidden.size(1), D = config_.hidden_size;
    const int64_t H = config_.num_heads, d = config_.head_dim(), b = config_.mini_batch_size;
    const c10::ScalarType cd = compute_dtype(hidden);
    auto heads = [&](const at::Tensor & t) { return t.to(cd).view({B, T, H, d}).transpose(1, 2); };
    TTTInputs in;
    // RoPE by position inside the mini-batch (t mod b), aligned to absolute positions (§1.2, §1.10).
    at::Tensor pos = torch::remainder(
        torch::arange(offset, offset + T, torch::TensorOptions().dtype(torch::kInt64).device(hidden.device())), b);
    auto [cos, sin] = ttt_rope_tables(pos, d, config_.rope_theta, cd);  // one table for Q and K
    if (config_.share_qk) {
        // conv_q and conv_k read the same inputs, so one history serves both.
        const at::Tensor xqk = q_proj->forward(hidden);
        at::Tensor fresh, & history = conv_history != nullptr ? *conv_history : fresh;
        at::Tensor history_k = history;
        in.XQ = ttt_rope_apply(heads(conv_q->forward_with_history(xqk, history)), cos, sin);
        in.XK = ttt_rope_apply(heads(conv_k->forward_with_history(xqk, history_k)), cos, sin);
    } else {
        in.XQ = ttt_rope_apply(heads(q_proj->forward(hidden)), cos, sin);
        in.XK = ttt_rope_apply(heads(k_proj->forward(hidden)), cos, sin);
    }
    in.XV = heads(v_proj->forward(hidden));
    at::Tensor idx = torch::arange(1, b + 1, torch::TensorOptions().dtype(cd).device(hidden.device()));
    if (!config_.learnable_lr) {
        // Fixed η: the learned σ(θ_lr·x + β) and δ are off; η_base/d and the running-mean 1/i stay.
        in.lr = torch::full({B, H, T}, config_.ttt_base_lr / static_cast<double>(d),
                            torch::TensorOptions().dtype(cd).device(hidden.device()));
        in.tok = 1.0 / idx;
        return in;
    }
    // Token-dependent inner lr from the full-width layer input, one linear map per head (§1.5).
    at::Tensor logits = torch::matmul(hidden.to(cd), learnable_ttt_lr_weight.to(cd).view({H, D}).t()) +
                        learnable_ttt_lr_bias.to(cd).view({H});
    in.lr = (torch::sigmoid(logits) * (config_.ttt_base_lr / static_cast<double>(d))).permute({0, 2, 1});
    // tok_i = max(0, 1/i + δ_i): the running-mean scale of the accumulated gradient at position i.
    in.tok = torch::clamp_min(1.0 / idx + learnable_token_idx.to(cd), 0.0);
    return in;
}

at::Tensor TTTLayerImpl::ttt(const TTTInputs & in, TTTState & state, TTTMode mode) {
    const int64_t B = in.XQ.size(0), H = in.XQ.size(1), T = in.XQ.size(2), d = in.XQ.size(3);
    const int64_t b = config_.mini_batch_size, N = B * H;
    const c10::ScalarType cd = in.XQ.scalar_type();
    // Under autocast the inner matmuls would silently run in bf16/fp16 and round the inner weights and
    // their updates: the inner loop opts out (the same dispatch-key guard autocast uses internally,
    // stable across libtorch 1.13 and 2.x).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    at::Tensor Q = in.XQ.reshape({N, T, d}), K = in.XK.reshape({N, T, d}), V = in.XV.reshape({N, T, d});
    at::Tensor lr = in.lr.reshape({N, T});
    const bool norm = config_.inner_norm;
    at::Tensor gamma, beta;  // unused (undefined) without the inner LayerNorm
    if (norm) gamma = per_row(ttt_norm_weight.unsqueeze(1), B, cd), beta = per_row(ttt_norm_bias.unsqueeze(1), B, cd);
    if (!state.W1.defined()) state = initial_state(B, cd);  // a fresh state: the learned θ_init
    TTTInnerWeights w{flat(state.W1, cd), flat(state.b1, cd), flat(state.W2, cd), flat(state.b2, cd)};
    TTTInnerWeights acc{flat(state.grad_W1, cd), flat(state.grad_b1, cd), flat(state.grad_W2, cd),
                        flat(state.grad_b2, cd)};
    const double eps = config_.ttt_norm_eps;
    std::vector<at::Tensor> outs;
    int64_t p = state.offset % b;  // in-mini-batch position of the first token
    for (int64_t t = 0; t < T;) {
        if (mode == TTTMode::dual && p == 0 && !acc.defined() && T - t >= b) {
            // Whole mini-batches from a boundary (all of training): one scan, far fewer ops than a
            // ttt_chunk_dual call per mini-batch, same values.
            const int64_t span = (T - t) / b * b;
            TTTScanResult scan = ttt_scan_dual(w, Q.slice(1, t, t + span), K.slice(1, t, t + span),
                                               V.slice(1, t, t + span), in.tok, lr.slice(1, t, t + span), gamma, beta,
                                               eps, norm);
            outs.push_back(scan.out);
            w = scan.w;
            t += span;
            continue;
        }
        // A chunk never crosses a mini-batch boundary: all its gradients are taken at the same w.
        const int64_t r = std::min(b - p, T - t);
        at::Tensor q = Q.slice(1, t, t + r), k = K.slice(1, t, t + r), v = V.slice(1, t, t + r);
        at::Tensor tok = in.tok.slice(0, p, p + r), lr_c = lr.slice(1, t, t + r);
        TTTChunkResult res = mode == TTTMode::dual
                                 ? ttt_chunk_dual(w, acc, q, k, v, tok, lr_c, gamma, beta, eps, norm)
                                 : ttt_chunk_primal(w, acc, q, k, v, tok, lr_c, gamma, beta, eps, norm);
        outs.push_back(res.out);
        acc = res.acc;
        if (p + r == b) {
            // Mini-batch complete: its last row's weights W_b start the next one (§1.6).
            w = ttt_apply_update(w, acc, in.tok[b - 1]);
            acc = TTTInnerWeights{};
        }
        p = (p + r) % b;
        t += r;
    }
    state.W1 = unflat(w.W1, B);
    state.b1 = unflat(w.b1, B);
    state.W2 = unflat(w.W2, B);
    state.b2 = unflat(w.b2, B);
    state.grad_W1 = unflat(acc.W1, B);
    state.grad_b1 = unflat(acc.b1, B);
    state.grad_W2 = unflat(acc.W2, B);
    state.grad_b2 = unflat(acc.b2, B);
    state.offset += T;
    return torch::cat(outs, 1).view({B, H, T, d});
}

at::Tensor TTTLayerImpl::output(const at::Tensor & inner, const at::Tensor & hidden) {
    const int64_t B = inner.size(0), T = inner.size(2), D = config_.hidden_size;
    const c10::ScalarType cd = inner.scalar_type();
    at::Tensor y = inner.transpose(1, 2).reshape({B, T, D});
    // post_norm in the compute dtype (its statistics are over the full width), then back.
    y = F::layer_norm(y, F::LayerNormFuncOptions({D})
                             .weight(post_norm->weight.to(cd))
                             .bias(post_norm->bias.to(cd))
                             .eps(config_.post_norm_eps));
    if (config_.use_gate) y = y * gelu_tanh(g_proj->forward(hidden).to(cd));
    return o_proj->forward(y.to(hidden.scalar_type()));
}

std::pair<at::Tensor, TTTState> TTTLayerImpl::forward_with_state(const at::Tensor & hidden, TTTState state,
                                                                 TTTMode mode) {
    CT3_CHECK(hidden.defined() && hidden.dim() == 3 && hidden.size(0) > 0 && hidden.size(1) > 0 &&
                  hidden.size(2) == config_.hidden_size,
              ErrorKind::invalid_argument, "TTTLayer: hidden must be [batch, seq, {}] with batch, seq > 0 (got {})",
              config_.hidden_size,
              hidden.defined() ? fmt::format("[{}]", fmt::join(hidden.sizes(), ", ")) : "undefined");
    CT3_CHECK(hidden.is_floating_point(), ErrorKind::invalid_argument,
              "TTTLayer: hidden must be floating point (got {})", c10::toString(hidden.scalar_type()));
    const int64_t B = hidden.size(0);
    CT3_CHECK(state.offset >= 0, ErrorKind::invalid_argument, "TTTState: offset must be >= 0 (got {})", state.offset);
    CT3_CHECK(!config_.share_qk || state.offset == 0 || state.conv_history.defined(), ErrorKind::invalid_argument,
              "TTTState: offset is {} but conv_history is undefined (share_qk continues from the last {} inputs of "
              "conv_q/conv_k)",
              state.offset, config_.conv_width - 1);
    if (!state.W1.defined()) {
        CT3_CHECK(state.offset == 0 && !state.grad_W1.defined(), ErrorKind::invalid_argument,
                  "TTTState: W1 is undefined but offset is {} (only a fresh state may omit the weights)", state.offset);
        state = initial_state(B, compute_dtype(hidden));
    }
    CT3_CHECK(state.W1.dim() == 4 && state.W1.size(0) == B && state.W1.size(1) == config_.num_heads &&
                  state.W1.size(2) == config_.head_dim() && state.W1.size(3) == config_.inner_hidden() &&
                  state.W2.defined() == config_.is_mlp(),
              ErrorKind::invalid_argument, "TTTState: W1 has shape [{}] (expected [{}, {}, {}, {}]{})",
              fmt::join(state.W1.sizes(), ", "), B, config_.num_heads, config_.head_dim(), config_.inner_hidden(),
              config_.is_mlp() ? " with W2/b2" : " without W2/b2");
    TTTInputs in = project(hidden, state.offset, config_.share_qk ? &state.conv_history : nullptr);
    at::Tensor inner = ttt(in, state, mode);
    return {output(inner, hidden), std::move(state)};
}

at::Tensor TTTLayerImpl::forward(const at::Tensor & hidden, TTTMode mode) {
    return forward_with_state(hidden, TTTState{}, mode).first;
}

}  // namespace ct3
