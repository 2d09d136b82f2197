#!/usr/bin/env python3
"""Golden fixtures for tests/ttt_golden_test.cpp: tiny TTT-Linear / TTT-MLP language models (Llama and
Mamba backbones) with random weights, and what the reference definitions compute for them.

    python3 scripts/ttt_golden.py OUT_DIR        # torch >= 2.0 only (no transformers, numpy, safetensors)
    cp -r OUT_DIR/. tests/data/ttt_golden/ && build/tests/ttt_golden_test

This is an independent re-statement of the reference PyTorch implementation, test-time-training/
ttt-lm-pytorch ttt.py @ cd831db, as ../shared/reference/ttt_layers.md describes it (section numbers below),
in that file's structure and names: TTTBase.get_qkv_projections / get_eta / forward, TTTLinear and
TTTMLP.ttt with a compute_mini_batch per mini-batch (dual form, or the primal form the reference uses
with a cache), ln_fwd / ln_fused_l2_bwd / gelu_bwd, Block, TTTModel, TTTForCausalLM. It is deliberately
not a port of ct3's C++, so that it can catch ct3 bugs. Everything runs in float64 on the CPU
(deterministic); the weights are drawn once, rounded to float32 (what model.safetensors stores, and
what ct3's loader reads) and the reference is computed in float64 from those exact values.

Deviations from ttt.py, all in favour of float64 exactness (none changes the math):
  * RMSNorm and RoPE keep float64 (ttt.py computes them in float32);
  * gelu_bwd uses the exact constants sqrt(2/pi) and 3*0.044715*sqrt(2/pi) (ttt.py rounds them to
    8 digits; JAX differentiates exactly);
  * the model runs without a cache; the cache's view of the state after the sequence (weights at the
    start of the current mini-batch + the gradient accumulator of its tokens, TTTCache.update) is
    computed by running the trailing partial mini-batch in the primal form, as ttt.py does with a cache.

OUT_DIR/<case>/ gets config.json + model.safetensors (ct3's TTT folder format = ttt.py's TTTConfig fields
and TTTForCausalLM module names, float32) and golden.safetensors (float64 unless noted):
  input_ids [B, T] int64, logits [B, T, V], hidden_states [layers+1, B, T, D] (embeddings, then each
  block's output), layer_input / layer_output [B, T, D] (layer 0's seq_modeling_block alone),
  W1_states, b1_states, W1_grad, b1_grad (+ W2/b2 for MLP): that layer's TTTCache state after the T tokens.
OUT_DIR/golden.json lists the cases, their settings and the script's own self-checks.
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

SEED = 20240714
BATCH = 2
SEQ_LEN = 19  # 2 full mini-batches of 8 (or 4 of 4) + a partial one of 3
CHUNKS = [5, 1, 7, 6]  # (used by the C++ test; written to golden.json)

CASES = [
    # name, ttt_layer_type, backbone, heads, mini_batch_size, ttt_base_lr, tie_word_embeddings
    ("linear_llama", "linear", "llama", 4, 8, 1.0, True),
    ("linear_mamba", "linear", "mamba", 2, 4, 1.0, True),
    ("mlp_llama", "mlp", "llama", 2, 4, 0.5, False),
    ("mlp_mamba", "mlp", "mamba", 4, 8, 0.5, True),
]


class TTTConfig:
    """ttt.py TTTConfig fields (only those the model uses)."""

    def __init__(self, ttt_layer_type, backbone, num_attention_heads, mini_batch_size, ttt_base_lr,
                 tie_word_embeddings):
        mamba = backbone == "mamba"
        self.vocab_size = 64
        self.hidden_size = 32
        self.intermediate_size = 48
        self.num_hidden_layers = 2
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = 64
        self.rms_norm_eps = 1e-6
        self.rope_theta = 10000.0
        self.tie_word_embeddings = tie_word_embeddings
        self.bos_token_id = 1
        self.eos_token_id = 2
        self.ttt_layer_type = ttt_layer_type
        self.ttt_base_lr = ttt_base_lr
        self.mini_batch_size = mini_batch_size
        # The Mamba backbone is the three switches together (ttt_layers.md §1.13 item 5, §2.4).
        self.pre_conv = mamba
        self.share_qk = mamba
        self.use_gate = mamba
        self.conv_kernel = 4

    def to_json(self):
        keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "bos_token_id",
                "eos_token_id", "ttt_layer_type", "ttt_base_lr", "mini_batch_size", "pre_conv", "share_qk",
                "use_gate", "conv_kernel"]
        j = {"architectures": ["TTTForCausalLM"], "model_type": "ttt", "hidden_act": "silu",
             "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32"}
        j.update({k: getattr(self, k) for k in keys})
        return j


########################
### Backbone modules ###
########################


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def permute_qk(q, k):
    # Interleaved pairs (x[2i], x[2i+1]) -> halves (x[i], x[i + d/2]), so that HF's rotate-half RoPE
    # rotates the JAX pairs (ttt_layers.md §1.10, ttt.py:222-243).
    def f(x):
        b, h, t, d = x.shape
        return x.reshape(b, h, t, d // 2, 2).transpose(3, 4).reshape(b, h, t, d)
    return f(q), f(k)


def undo_permute_qk(q, k):
    def f(x):
        b, h, t, d = x.shape
        return x.reshape(b, h, t, 2, d // 2).transpose(3, 4).reshape(b, h, t, d)
    return f(q), f(k)


def apply_rotary_pos_emb(q, k, cos, sin):
    # cos/sin [T, d] broadcast over [B, H, T, d]
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class RotaryEmbedding(nn.Module):
    def __init__(self, dim, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids):
        freqs = position_ids.to(torch.float64)[:, None] * self.inv_freq[None, :]  # [T, d/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))


class SwiGluMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def causal_depthwise_conv(conv, x):
    """[B, T, C] through a depthwise nn.Conv1d padded by kernel-1 on both sides, keeping the first T
    outputs: output t sees inputs t-kernel+1 .. t (ttt.py's `self.conv(x)[..., :seq_len]`)."""
    seq_len = x.shape[1]
    return conv(x.transpose(1, 2))[..., :seq_len].transpose(1, 2)


def depthwise_conv1d(channels, kernel):
    return nn.Conv1d(channels, channels, kernel_size=kernel, groups=channels, padding=kernel - 1, bias=True)


class Conv(nn.Module):
    """The Mamba backbone's pre_conv: RMSNorm then a causal depthwise conv (ttt.py:359-423)."""

    def __init__(self, config):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.conv = depthwise_conv1d(config.hidden_size, config.conv_kernel)

    def forward(self, hidden_states):
        return causal_depthwise_conv(self.conv, self.norm(hidden_states))


#########################
### TTT layer modules ###
#########################


def ln_fwd(x, gamma, beta, eps=1e-6):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def ln_fused_l2_bwd(x, l2_target, gamma, beta, eps=1e-6):
    """d/dx of 1/2 ||LN(x) - target||^2 in closed form (ttt_layers.md §1.4)."""
    D = x.shape[-1]
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    std = torch.sqrt(var + eps)
    x_hat = (x - mu) / std
    y = gamma * x_hat + beta
    grad_x_hat = (y - l2_target) * gamma
    return ((1.0 / D) * (D * grad_x_hat - grad_x_hat.sum(dim=-1, keepdim=True)
                         - x_hat * (grad_x_hat * x_hat).sum(dim=-1, keepdim=True)) / std)


SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_bwd(x):
    """Derivative of the tanh-approximated GELU."""
    tanh_out = torch.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x))
    return (0.5 * x * ((1 - tanh_out * tanh_out) * (SQRT_2_OVER_PI + 3 * 0.044715 * SQRT_2_OVER_PI * x * x))
            + 0.5 * (1 + tanh_out))


class TTTBase(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.width // self.num_heads
        self.mini_batch_size = config.mini_batch_size
        self.share_qk = config.share_qk
        self.use_gate = config.use_gate

        # token_idx_i = 1/i scales the running sum of the mini-batch (§1.5); learnable offset δ.
        self.register_buffer("token_idx", 1.0 / torch.arange(1, self.mini_batch_size + 1, dtype=torch.float64),
                             persistent=False)
        self.learnable_token_idx = nn.Parameter(torch.zeros(self.mini_batch_size))

        self.q_proj = nn.Linear(self.width, self.width, bias=False)
        if not self.share_qk:
            self.k_proj = nn.Linear(self.width, self.width, bias=False)
        self.v_proj = nn.Linear(self.width, self.width, bias=False)
        self.o_proj = nn.Linear(self.width, self.width, bias=False)
        if self.share_qk:
            self.conv_q = depthwise_conv1d(self.width, config.conv_kernel)
            self.conv_k = depthwise_conv1d(self.width, config.conv_kernel)

        self.rotary_emb = RotaryEmbedding(self.head_dim, base=config.rope_theta)

        # Per-head token-dependent lr gate on the full-width input: [H, 1, width], [H, 1].
        self.learnable_ttt_lr_weight = nn.Parameter(torch.zeros(self.num_heads, 1, self.width))
        self.learnable_ttt_lr_bias = nn.Parameter(torch.zeros(self.num_heads, 1))

        # Inner per-head LayerNorm [H, head_dim].
        self.ttt_norm_weight = nn.Parameter(torch.ones(self.num_heads, self.head_dim))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(self.num_heads, self.head_dim))

        if self.use_gate:
            self.g_proj = nn.Linear(self.width, self.width, bias=False)
        self.post_norm = nn.LayerNorm(self.width, eps=1e-6)

    def get_qkv_projections(self, hidden_states):
        if self.share_qk:
            # One shared projection, two different causal convs for Q and K; V has no conv (§1.2).
            xqk = self.q_proj(hidden_states)
            XQ = causal_depthwise_conv(self.conv_q, xqk)
            XK = causal_depthwise_conv(self.conv_k, xqk)
            XV = self.v_proj(hidden_states)
        else:
            XQ, XK, XV = self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)
        return XQ, XK, XV

    def get_eta(self, X, mini_batch_size):
        """X [B, num_mini_batch, K, width] -> token_eta [B, H, n, K, 1], ttt_lr_eta [B, H, n, 1, K]."""
        # lr_j = base_lr * sigmoid(x_j . w_h + b_h) / head_dim, x_j the full-width layer input (§1.5)
        ttt_lr = torch.einsum("bnkc,hdc->bhnkd", X, self.learnable_ttt_lr_weight) + \
            self.learnable_ttt_lr_bias.reshape(1, -1, 1, 1, 1)
        ttt_lr = torch.sigmoid(ttt_lr).permute(0, 1, 2, 4, 3)
        ttt_lr_eta = self.config.ttt_base_lr * ttt_lr / self.head_dim
        # tok_i = max(0, 1/i + δ_i), i = 1..K (a trailing partial mini-batch of r uses tok_1..tok_r)
        token_idx = torch.clamp_min((self.token_idx + self.learnable_token_idx)[:mini_batch_size], 0.0)
        token_eta = torch.broadcast_to(token_idx.reshape(1, 1, 1, mini_batch_size, 1),
                                       (X.shape[0], self.num_heads, X.shape[1], mini_batch_size, 1))
        return token_eta, ttt_lr_eta

    def apply_gate(self, hidden_states, ttt_output):
        return F.gelu(self.g_proj(hidden_states), approximate="tanh") * ttt_output

    def initial_params(self, B):
        params = {}
        for name in self.param_names:
            w = getattr(self, name)
            params[f"{name}_states"] = torch.tile(w.unsqueeze(0), (B,) + (1,) * w.dim())
            params[f"{name}_grad"] = torch.zeros_like(params[f"{name}_states"])
        return params

    def ttt(self, XQ, XK, XV, X, mini_batch_size, params, use_dual_form):
        """Scans the mini-batches of one call. XQ/XK/XV [B, H, L, d] with L a multiple of
        mini_batch_size; X [B, L, width]. Returns [B, L, width] and the params after the last one."""
        B, H, L, d = XQ.shape
        n = L // mini_batch_size
        XQ, XK, XV = (t.reshape(B, H, n, mini_batch_size, d) for t in (XQ, XK, XV))
        token_eta, ttt_lr_eta = self.get_eta(X.reshape(B, n, mini_batch_size, self.width), mini_batch_size)
        eta = token_eta * ttt_lr_eta  # [B, H, n, K, K]: E[i, j] = tok_i * lr_j
        outs = []
        for i in range(n):
            inputs = {"XQ": XQ[:, :, i], "XK": XK[:, :, i], "XV": XV[:, :, i], "eta": eta[:, :, i],
                      "token_eta": token_eta[:, :, i], "ttt_lr_eta": ttt_lr_eta[:, :, i]}
            params, out = self.compute_mini_batch(params, inputs, mini_batch_size, use_dual_form)
            if mini_batch_size == self.mini_batch_size:
                # A complete mini-batch: its last row's weights start the next one and the accumulators
                # are cleared (TTTCache.update, ttt.py:575-594; the dual form returns zeros anyway).
                params = {k: (torch.zeros_like(v) if k.endswith("_grad") else v) for k, v in params.items()}
            outs.append(out)
        out = torch.stack(outs, dim=2)  # [B, H, n, K, d]
        return out.permute(0, 2, 3, 1, 4).reshape(B, L, self.width), params

    def forward(self, hidden_states, mode="dual"):
        """Full sequence without a cache. mode "dual": every mini-batch in dual form, the trailing partial
        one too (with K = r, ttt.py:894-907). mode "primal": every mini-batch in the primal form (what
        ttt.py uses for the partial mini-batch when caching). Sets self.last_state to the TTTCache view
        after the sequence (states = weights at the start of the current mini-batch, grads = its
        accumulators) and self.last_weights to the reference's last-row weights W_r."""
        B, L = hidden_states.shape[:2]
        K = self.mini_batch_size
        num_mini_batch, reminder_len = L // K, L % K
        use_dual_form = mode == "dual"

        XQ, XK, XV = self.get_qkv_projections(hidden_states)
        XQ, XK, XV = (t.reshape(B, L, self.num_heads, self.head_dim).transpose(1, 2) for t in (XQ, XK, XV))
        # RoPE by position inside the mini-batch (§1.2, §1.10)
        position_ids = torch.arange(L, dtype=torch.int64) % K
        cos, sin = self.rotary_emb(position_ids)
        XQ, XK = permute_qk(XQ, XK)
        XQ, XK = apply_rotary_pos_emb(XQ, XK, cos, sin)
        XQ, XK = undo_permute_qk(XQ, XK)

        params = self.initial_params(B)
        outputs = []
        if num_mini_batch > 0:
            n = num_mini_batch * K
            out, params = self.ttt(XQ[:, :, :n], XK[:, :, :n], XV[:, :, :n], hidden_states[:, :n], K, params,
                                   use_dual_form)
            outputs.append(out)
        self.last_state = dict(params)
        self.last_weights = {k: v for k, v in params.items() if k.endswith("_states")}
        if reminder_len > 0:
            r = reminder_len
            out, rem = self.ttt(XQ[:, :, -r:], XK[:, :, -r:], XV[:, :, -r:], hidden_states[:, -r:], r, params,
                                use_dual_form)
            outputs.append(out)
            # The cache keeps the start-of-mini-batch weights and stores the accumulators (primal only).
            self.last_state.update({k: v for k, v in rem.items() if k.endswith("_grad")})
            self.last_weights = {k: v for k, v in rem.items() if k.endswith("_states")}

        output_hidden_states = self.post_norm(torch.cat(outputs, dim=1))
        if self.use_gate:
            output_hidden_states = self.apply_gate(hidden_states, output_hidden_states)
        return self.o_proj(output_hidden_states)


class TTTLinear(TTTBase):
    param_names = ["W1", "b1"]

    def __init__(self, config):
        super().__init__(config)
        self.W1 = nn.Parameter(torch.zeros(self.num_heads, self.head_dim, self.head_dim))
        self.b1 = nn.Parameter(torch.zeros(self.num_heads, 1, self.head_dim))

    def compute_mini_batch(self, params_dict, inputs, mini_batch_size, use_dual_form):
        W1_init, b1_init = params_dict["W1_states"], params_dict["b1_states"]  # [B,H,d,d], [B,H,1,d]
        XQ, XK, XV = inputs["XQ"], inputs["XK"], inputs["XV"]  # [B,H,K,d]
        eta = inputs["eta"]  # [B,H,K,K]
        token_eta, ttt_lr_eta = inputs["token_eta"], inputs["ttt_lr_eta"]  # [B,H,K,1], [B,H,1,K]
        ln_weight = self.ttt_norm_weight.reshape(self.num_heads, 1, self.head_dim)
        ln_bias = self.ttt_norm_bias.reshape(self.num_heads, 1, self.head_dim)

        X1 = XK
        Z1 = X1 @ W1_init + b1_init
        # The residual inside f makes the target V - K (§1.3); gradients at the mini-batch start (§1.6).
        grad_l_wrt_Z1 = ln_fused_l2_bwd(Z1, XV - XK, ln_weight, ln_bias)

        if use_dual_form:  # §1.7
            Attn1 = torch.tril(XQ @ X1.transpose(-2, -1))
            b1_bar = b1_init - torch.tril(eta) @ grad_l_wrt_Z1
            Z1_bar = XQ @ W1_init - (eta * Attn1) @ grad_l_wrt_Z1 + b1_bar
            last_eta = eta[:, :, -1, :, None]  # [B,H,K,1]: tok_K * lr_j
            W1_last = W1_init - (last_eta * X1).transpose(-1, -2) @ grad_l_wrt_Z1
            b1_last = b1_init - torch.sum(last_eta * grad_l_wrt_Z1, dim=-2, keepdim=True)
            grad_W1_last, grad_b1_last = torch.zeros_like(W1_last), torch.zeros_like(b1_last)
        else:  # §1.6: materialise W_i for every token i
            lr = torch.tril(torch.broadcast_to(ttt_lr_eta, (*ttt_lr_eta.shape[:2], mini_batch_size,
                                                            mini_batch_size)))  # [B,H,K,K] lr_j for j <= i
            grad_W1 = torch.einsum("bhki,bhkj->bhkij", X1, grad_l_wrt_Z1)  # per-token outer products
            grad_W1 = torch.einsum("bhnk,bhkij->bhnij", lr, grad_W1) + params_dict["W1_grad"].unsqueeze(2)
            grad_b1 = torch.einsum("bhnk,bhki->bhni", lr, grad_l_wrt_Z1) + params_dict["b1_grad"]
            W1_bar = W1_init.unsqueeze(2) - grad_W1 * token_eta.unsqueeze(-1)  # [B,H,K,d,d]
            b1_bar = b1_init - grad_b1 * token_eta  # [B,H,K,d]
            Z1_bar = (XQ.unsqueeze(3) @ W1_bar).squeeze(3) + b1_bar
            W1_last, b1_last = W1_bar[:, :, -1], b1_bar[:, :, -1:]
            grad_W1_last, grad_b1_last = grad_W1[:, :, -1], grad_b1[:, :, -1:]

        out = XQ + ln_fwd(Z1_bar, ln_weight, ln_bias)
        return {"W1_states": W1_last, "b1_states": b1_last, "W1_grad": grad_W1_last, "b1_grad": grad_b1_last}, out


class TTTMLP(TTTBase):
    param_names = ["W1", "b1", "W2", "b2"]

    def __init__(self, config):
        super().__init__(config)
        self.W1 = nn.Parameter(torch.zeros(self.num_heads, self.head_dim, 4 * self.head_dim))
        self.b1 = nn.Parameter(torch.zeros(self.num_heads, 1, 4 * self.head_dim))
        self.W2 = nn.Parameter(torch.zeros(self.num_heads, 4 * self.head_dim, self.head_dim))
        self.b2 = nn.Parameter(torch.zeros(self.num_heads, 1, self.head_dim))

    def compute_mini_batch(self, params_dict, inputs, mini_batch_size, use_dual_form):
        W1_init, b1_init = params_dict["W1_states"], params_dict["b1_states"]  # [B,H,d,4d], [B,H,1,4d]
        W2_init, b2_init = params_dict["W2_states"], params_dict["b2_states"]  # [B,H,4d,d], [B,H,1,d]
        XQ, XK, XV = inputs["XQ"], inputs["XK"], inputs["XV"]
        eta = inputs["eta"]
        token_eta, ttt_lr_eta = inputs["token_eta"], inputs["ttt_lr_eta"]
        ln_weight = self.ttt_norm_weight.reshape(self.num_heads, 1, self.head_dim)
        ln_bias = self.ttt_norm_bias.reshape(self.num_heads, 1, self.head_dim)

        X1 = XK
        Z1 = X1 @ W1_init + b1_init
        X2 = F.gelu(Z1, approximate="tanh")
        Z2 = X2 @ W2_init + b2_init
        grad_l_wrt_Z2 = ln_fused_l2_bwd(Z2, XV - XK, ln_weight, ln_bias)
        grad_l_wrt_Z1 = grad_l_wrt_Z2 @ W2_init.transpose(-2, -1) * gelu_bwd(Z1)  # §1.4

        if use_dual_form:  # §1.7
            Attn1 = torch.tril(XQ @ X1.transpose(-2, -1))
            b1_bar = b1_init - torch.tril(eta) @ grad_l_wrt_Z1
            Z1_bar = XQ @ W1_init - (eta * Attn1) @ grad_l_wrt_Z1 + b1_bar
            X2_bar = F.gelu(Z1_bar, approximate="tanh")
            Attn2 = torch.tril(X2_bar @ X2.transpose(-2, -1))
            b2_bar = b2_init - torch.tril(eta) @ grad_l_wrt_Z2
            Z2_bar = X2_bar @ W2_init - (eta * Attn2) @ grad_l_wrt_Z2 + b2_bar
            last_eta = eta[:, :, -1, :, None]
            W1_last = W1_init - (last_eta * X1).transpose(-1, -2) @ grad_l_wrt_Z1
            b1_last = b1_init - torch.sum(last_eta * grad_l_wrt_Z1, dim=-2, keepdim=True)
            W2_last = W2_init - (last_eta * X2).transpose(-1, -2) @ grad_l_wrt_Z2
            b2_last = b2_init - torch.sum(last_eta * grad_l_wrt_Z2, dim=-2, keepdim=True)
            grads = [torch.zeros_like(t) for t in (W1_last, b1_last, W2_last, b2_last)]
        else:  # §1.6
            lr = torch.tril(torch.broadcast_to(ttt_lr_eta, (*ttt_lr_eta.shape[:2], mini_batch_size,
                                                            mini_batch_size)))
            grad_W2 = torch.einsum("bhki,bhkj->bhkij", X2, grad_l_wrt_Z2)
            grad_W2 = torch.einsum("bhnk,bhkij->bhnij", lr, grad_W2) + params_dict["W2_grad"].unsqueeze(2)
            grad_b2 = torch.einsum("bhnk,bhki->bhni", lr, grad_l_wrt_Z2) + params_dict["b2_grad"]
            grad_W1 = torch.einsum("bhki,bhkj->bhkij", X1, grad_l_wrt_Z1)
            grad_W1 = torch.einsum("bhnk,bhkij->bhnij", lr, grad_W1) + params_dict["W1_grad"].unsqueeze(2)
            grad_b1 = torch.einsum("bhnk,bhki->bhni", lr, grad_l_wrt_Z1) + params_dict["b1_grad"]
            W1_bar = W1_init.unsqueeze(2) - grad_W1 * token_eta.unsqueeze(-1)
            b1_bar = b1_init - grad_b1 * token_eta
            W2_bar = W2_init.unsqueeze(2) - grad_W2 * token_eta.unsqueeze(-1)
            b2_bar = b2_init - grad_b2 * token_eta
            Z1_bar = (XQ.unsqueeze(3) @ W1_bar).squeeze(3) + b1_bar
            X2_bar = F.gelu(Z1_bar, approximate="tanh")
            Z2_bar = (X2_bar.unsqueeze(3) @ W2_bar).squeeze(3) + b2_bar
            W1_last, b1_last = W1_bar[:, :, -1], b1_bar[:, :, -1:]
            W2_last, b2_last = W2_bar[:, :, -1], b2_bar[:, :, -1:]
            grads = [grad_W1[:, :, -1], grad_b1[:, :, -1:], grad_W2[:, :, -1], grad_b2[:, :, -1:]]

        out = XQ + ln_fwd(Z2_bar, ln_weight, ln_bias)
        params = {"W1_states": W1_last, "b1_states": b1_last, "W2_states": W2_last, "b2_states": b2_last}
        params.update(dict(zip(["W1_grad", "b1_grad", "W2_grad", "b2_grad"], grads)))
        return params, out


################################
### End-to-end architecture ###
################################


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.pre_conv = config.pre_conv
        self.seq_modeling_block = (TTTLinear if config.ttt_layer_type == "linear" else TTTMLP)(config)
        self.mlp = SwiGluMLP(config)
        if self.pre_conv:
            self.conv = Conv(config)
        self.seq_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.ffn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, mode="dual"):
        if self.pre_conv:
            hidden_states = hidden_states + self.conv(hidden_states)
        hidden_states = hidden_states + self.seq_modeling_block(self.seq_norm(hidden_states), mode)
        return hidden_states + self.mlp(self.ffn_norm(hidden_states))


class TTTModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids, mode="dual"):
        hidden_states = self.embed_tokens(input_ids)
        all_hidden_states = [hidden_states]
        for layer in self.layers:
            hidden_states = layer(hidden_states, mode)
            all_hidden_states.append(hidden_states)
        return self.norm(hidden_states), all_hidden_states


class TTTForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = TTTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, mode="dual"):
        hidden_states, all_hidden_states = self.model(input_ids, mode)
        return self.lm_head(hidden_states), all_hidden_states

    def checkpoint_tensors(self):
        """What model.safetensors holds: every parameter under its ttt.py name, lm_head only when untied
        (save_pretrained drops tied weights)."""
        out = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue
            out[name] = p.detach()
        return out


###################
### Fixtures    ###
###################


def randomize(model, config, gen, clamp_token_idx):
    """Non-trivial values everywhere (nonzero biases, LN affine, lr gate in sigmoid's linear range),
    at scales where every path matters and nothing saturates. Rounded to float32, the stored dtype."""
    D = config.hidden_size

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean

    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
                v = normal(p.shape, 0.5)
            elif name.endswith("norm.weight") and "post_norm" not in name:  # RMSNorms
                v = normal(p.shape, 0.1, 1.0)
            elif name.endswith("_proj.weight"):
                v = normal(p.shape, 1.0 / math.sqrt(p.shape[1]))
            elif name.endswith("conv.weight") or name.endswith("conv_q.weight") or name.endswith("conv_k.weight"):
                v = normal(p.shape, 0.5)
            elif name.endswith(".bias") and ("conv" in name):
                v = normal(p.shape, 0.1)
            elif leaf == "learnable_ttt_lr_weight":
                v = normal(p.shape, 1.0 / math.sqrt(D))
            elif leaf == "learnable_ttt_lr_bias":
                v = normal(p.shape, 0.3)
            elif leaf == "learnable_token_idx":
                v = normal(p.shape, 0.05)
                if clamp_token_idx:
                    v[2] = -0.5  # 1/3 - 0.5 < 0: exercises the clamp at 0 (§5.4)
            elif leaf in ("ttt_norm_weight", "weight") and ("ttt_norm" in leaf or "post_norm" in name):
                v = normal(p.shape, 0.2 if "ttt_norm" in leaf else 0.1, 1.0)
            elif leaf == "ttt_norm_bias" or name.endswith("post_norm.bias"):
                v = normal(p.shape, 0.1)
            elif leaf == "W1":
                v = normal(p.shape, 1.0 / math.sqrt(p.shape[-2]))
            elif leaf == "W2":
                v = normal(p.shape, 1.0 / math.sqrt(p.shape[-2]))
            elif leaf in ("b1", "b2"):
                v = normal(p.shape, 0.1)
            else:
                raise RuntimeError(f"no init rule for parameter {name}")
            p.copy_(v.to(torch.float32).to(torch.float64))


DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def tensor_bytes(t):
    # Little-endian raw bytes without numpy (safetensors is little-endian; checked in main()).
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())


def save_safetensors(path, tensors):
    """The safetensors format (u64 header length, JSON header, packed data), written by hand so that the
    script needs torch only."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    """Reader for the self-check of save_safetensors."""
    inv = {v: k for k, v in DTYPES.items()}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = torch.tensor(list(data[8 + n + b:8 + n + e]), dtype=torch.uint8)
        out[name] = raw.view(inv[info["dtype"]]).reshape(info["shape"])
    return out


def max_diff(a, b):
    return float((a - b).abs().max()) if a.numel() else 0.0


def check(label, err, tol, checks):
    checks[label] = err
    print(f"  self-check {label}: {err:.3e} (tolerance {tol:.0e})")
    if not err <= tol:
        raise SystemExit(f"self-check failed: {label} = {err} > {tol}")


def global_self_checks(gen):
    """Checks of the building blocks against autograd and the JAX RoPE convention."""
    checks = {}
    x = torch.randn(3, 5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 5, 8, generator=gen, dtype=torch.float64)
    gamma = 1 + 0.3 * torch.randn(1, 1, 8, generator=gen, dtype=torch.float64)
    beta = 0.3 * torch.randn(1, 1, 8, generator=gen, dtype=torch.float64)
    loss = 0.5 * (ln_fwd(x, gamma, beta) - target).pow(2).sum()
    (auto,) = torch.autograd.grad(loss, x)
    check("ln_fused_l2_bwd_vs_autograd", max_diff(ln_fused_l2_bwd(x.detach(), target, gamma, beta), auto),
          1e-12, checks)
    z = torch.randn(64, generator=gen, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(F.gelu(z, approximate="tanh").sum(), z)
    check("gelu_bwd_vs_autograd", max_diff(gelu_bwd(z.detach()), auto), 1e-13, checks)
    # RoPE: permute + rotate-half + undo == rotating interleaved pairs as complex numbers (JAX, §1.10).
    d, T = 8, 6
    q = torch.randn(2, 3, T, d, generator=gen, dtype=torch.float64)
    pos = torch.arange(T) % 4
    cos, sin = RotaryEmbedding(d, 10000.0)(pos)
    qp, _ = permute_qk(q, q)
    qr, _ = apply_rotary_pos_emb(qp, qp, cos, sin)
    qr, _ = undo_permute_qk(qr, qr)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rot = torch.polar(torch.ones(T, d // 2, dtype=torch.float64), pos.to(torch.float64)[:, None] * inv_freq)
    qc = torch.view_as_real(torch.view_as_complex(q.reshape(2, 3, T, d // 2, 2).contiguous()) * rot)
    check("rope_vs_interleaved_complex", max_diff(qr, qc.reshape(2, 3, T, d)), 1e-14, checks)
    return checks


def make_case(out_dir, name, layer_type, backbone, heads, mini_batch_size, base_lr, tied, gen):
    print(f"case {name}: TTT-{layer_type}, {backbone} backbone, heads {heads}, mini-batch {mini_batch_size}, "
          f"ttt_base_lr {base_lr}, {'tied' if tied else 'untied'} head")
    config = TTTConfig(layer_type, backbone, heads, mini_batch_size, base_lr, tied)
    model = TTTForCausalLM(config)
    randomize(model, config, gen, clamp_token_idx=backbone == "mamba")
    model.eval()
    checks = {}
    with torch.no_grad():
        input_ids = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN), generator=gen, dtype=torch.int64)
        logits, hidden = model(input_ids, "dual")
        logits_primal, _ = model(input_ids, "primal")
        check("model_dual_vs_primal", max_diff(logits, logits_primal), 1e-10, checks)
        # Causality and the partial-mini-batch rule: every prefix alone gives the prefix of the logits.
        prefix_err = max(max_diff(model(input_ids[:, :t], "dual")[0], logits[:, :t]) for t in range(1, SEQ_LEN + 1))
        check("model_prefixes_vs_full", prefix_err, 1e-10, checks)
        # How much the inner learning moves the logits (if ~0 the fixture could not catch inner-loop bugs).
        config.ttt_base_lr = 0.0
        frozen, _ = model(input_ids, "dual")
        config.ttt_base_lr = base_lr
        inner_effect = max_diff(logits, frozen)
        print(f"  logits change when the inner updates are switched off: {inner_effect:.3f}"
              f" (logits max |.| {float(logits.abs().max()):.3f})")
        if inner_effect < 1e-2:
            raise SystemExit(f"case {name}: the inner updates barely change the logits ({inner_effect})")

        layer = model.model.layers[0].seq_modeling_block
        layer_input = torch.randn(BATCH, SEQ_LEN, config.hidden_size, generator=gen, dtype=torch.float64)
        layer_out_primal = layer(layer_input, "primal")
        state = dict(layer.last_state)
        weights_primal = dict(layer.last_weights)
        layer_output = layer(layer_input, "dual")
        check("layer_dual_vs_primal", max_diff(layer_output, layer_out_primal), 1e-10, checks)
        check("layer_last_weights_dual_vs_primal",
              max(max_diff(layer.last_weights[k], weights_primal[k]) for k in weights_primal), 1e-10, checks)
        W1_init = layer.W1.unsqueeze(0)
        moved = float((state["W1_states"] - W1_init).norm() / W1_init.expand_as(state["W1_states"]).norm())
        print(f"  relative change of W1 over the full mini-batches: {moved:.3f}")

    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    with open(os.path.join(case_dir, "config.json"), "w") as f:
        json.dump(config.to_json(), f, indent=2)
        f.write("\n")
    weights = {k: v.to(torch.float32) for k, v in model.checkpoint_tensors().items()}
    save_safetensors(os.path.join(case_dir, "model.safetensors"), weights)
    golden = {"input_ids": input_ids, "logits": logits, "hidden_states": torch.stack(hidden),
              "layer_input": layer_input, "layer_output": layer_output}
    golden.update({k: v for k, v in state.items()})
    golden = {k: v.contiguous() for k, v in golden.items()}
    save_safetensors(os.path.join(case_dir, "golden.safetensors"), golden)

    # The writer round-trips (and agrees with the safetensors package when it is installed).
    for file, tensors in (("model.safetensors", weights), ("golden.safetensors", golden)):
        back = load_safetensors(os.path.join(case_dir, file))
        assert sorted(back) == sorted(tensors), file
        assert all(torch.equal(back[k], tensors[k]) for k in tensors), file
        try:
            from safetensors.torch import load_file
            other = load_file(os.path.join(case_dir, file))
            assert all(torch.equal(other[k], tensors[k]) for k in tensors), file
        except ImportError:
            pass
    return {"ttt_layer_type": layer_type, "backbone": backbone, "num_attention_heads": heads,
            "mini_batch_size": mini_batch_size, "ttt_base_lr": base_lr, "tie_word_embeddings": tied,
            "batch": BATCH, "seq_len": SEQ_LEN, "inner_update_effect_on_logits": inner_effect,
            "logits_max_abs": float(logits.abs().max()), "self_checks": checks}


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: python3 scripts/ttt_golden.py OUT_DIR")
    if sys.byteorder != "little":
        raise SystemExit("safetensors is little-endian; run this on a little-endian machine")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_default_dtype(torch.float64)  # every module below is built in float64
    gen = torch.Generator().manual_seed(SEED)
    manifest = {
        "generated_by": f"scripts/ttt_golden.py, torch {torch.__version__}, float64 CPU, seed {SEED}",
        "reference": "test-time-training/ttt-lm-pytorch ttt.py @ cd831db as restated in "
                     "../shared/reference/ttt_layers.md",
        "chunks": CHUNKS,
        "self_checks": global_self_checks(gen),
        "cases": {},
    }
    for case in CASES:
        manifest["cases"][case[0]] = make_case(out_dir, *case, gen)
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(r, n)) for r, _, files in os.walk(out_dir) for n in files)
    print(f"wrote {len(CASES)} cases to {out_dir} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
