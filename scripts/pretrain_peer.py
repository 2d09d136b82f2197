#!/usr/bin/env python3
"""The peer of ct3-pretrain's throughput benchmark: the same model (a ct3-pretrain run's config.json),
data (its token shards), batch, AdamW (fused) and bf16 autocast, in a plain transformers + torch
training loop. Prints one JSON line: tokens/s over the timed steps and the final loss.

    python3 scripts/pretrain_peer.py RUN_DIR TRAIN_MANIFEST --micro_batch 64 --seq_len 512 --steps 40
"""
import argparse, json, math, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM


def shard_tokens(manifest_path):
    m = json.load(open(manifest_path))
    folder = os.path.dirname(os.path.abspath(manifest_path))
    parts = []
    for name in m["shards"]:
        path = os.path.join(folder, name if isinstance(name, str) else name["file"])
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        width = int(np.frombuffer(raw[12:16].tobytes(), dtype="<u4")[0])
        parts.append(np.frombuffer(raw[32:].tobytes(), dtype="<u2" if width == 2 else "<u4"))
    return np.concatenate(parts).astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("train_manifest")
    ap.add_argument("--micro_batch", type=int, default=64)
    ap.add_argument("--seq_len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (not the default peer)")
    a = ap.parse_args()

    torch.manual_seed(0)
    config = LlamaConfig.from_pretrained(a.run_dir)
    model = LlamaForCausalLM(config).cuda().float().train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = torch.compile(model) if a.compile else model
    tokens = torch.from_numpy(shard_tokens(a.train_manifest))
    windows = (tokens.numel() - 1) // a.seq_len
    gen = torch.Generator().manual_seed(0)

    def batch():
        idx = torch.randint(0, windows, (a.micro_batch,), generator=gen) * a.seq_len
        w = torch.stack([tokens[i:i + a.seq_len + 1] for i in idx.tolist()])
        return w.cuda(non_blocking=True)

    loss = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        w = batch()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = step_fn(input_ids=w[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = time.perf_counter() - start
    print(json.dumps({"impl": "transformers+torch" + (" (compiled)" if a.compile else ""),
                      "tokens_per_s": a.steps * a.micro_batch * a.seq_len / dt, "seconds": dt,
                      "loss": float(loss), "params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    sys.exit(main())
