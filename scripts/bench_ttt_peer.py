#!/usr/bin/env python3
"""The peer of ct3-bench-ttt: one CT3 test-time-training query written with transformers + peft, the
original CT3 client's stack (CT3/models/model.py): LoRA on q,k,v,up,down (fp32 adapter on the model's
dtype), a fresh AdamW per query, batch 1, clip 1.0, N epochs; then greedy generation with the KV cache.

    python3 scripts/bench_ttt_peer.py --shape llama3-8b --device cuda --dtype bfloat16

The samples come from the same formula as ct3-bench-ttt (sample i: 128 + 37 i mod 129 tokens for the
default 256, ids (7919 i + 104729 j + 3) mod vocab) and the prompt likewise, so both do the same work.
Prints one JSON line like ct3-bench-ttt's.
"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    "llama3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True),
    "stories260k": dict(vocab_size=512, hidden_size=64, intermediate_size=172, num_hidden_layers=5,
                        num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=True),
}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama3.2-1b", choices=sorted(SHAPES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--sample_tokens", type=int, default=256)
    p.add_argument("--prompt_tokens", type=int, default=64)
    p.add_argument("--new_tokens", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lora_rank", type=int, default=128)
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager)")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)

    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=8192, rope_theta=500000.0,
                         bos_token_id=1, eos_token_id=2, attn_implementation=args.attn)
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(dtype)
    model.config.use_cache = False
    for param in model.parameters():
        param.requires_grad = False
    lora = LoraConfig(r=args.lora_rank, lora_alpha=16, lora_dropout=0.1, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():
        if "lora" in name:
            param.requires_grad = True
            param.data = param.data.float()
    trainable = [p for p in model.parameters() if p.requires_grad]
    original = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    lo = args.sample_tokens // 2
    span = args.sample_tokens - lo + 1
    vocab = config.vocab_size
    samples = []
    for i in range(args.samples):
        n = lo + (37 * i) % span
        samples.append(torch.tensor([[(7919 * i + 104729 * j + 3) % vocab for j in range(n)]], device=args.device))
    prompt = torch.tensor([[(31 * j + 5) % vocab for j in range(args.prompt_tokens)]], device=args.device)

    train_s, generate_s = [], []
    for q in range(args.queries):
        with torch.no_grad():  # reset to the one initial state, as CT3
            for n, p in model.named_parameters():
                if n in original:
                    p.copy_(original[n])
        sync(args.device)
        t0 = time.perf_counter()
        model.train()
        optimizer = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.01)
        losses = []
        for _ in range(args.epochs):
            for x in samples:
                optimizer.zero_grad()
                loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                losses.append(loss.detach())
        torch.stack(losses).cpu()
        model.eval()
        sync(args.device)
        train_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, do_sample=False, use_cache=True, pad_token_id=2)
        sync(args.device)
        generate_s.append(time.perf_counter() - t0)

    def mean(v):
        return v[0] if len(v) == 1 else sum(v[1:]) / (len(v) - 1)

    import peft
    import transformers
    out = {
        "impl": "transformers+peft",
        "model": args.shape,
        "device": args.device,
        "dtype": args.dtype,
        "lora_rank": args.lora_rank,
        "lora_params": sum(p.numel() for p in trainable),
        "samples": args.samples,
        "sample_tokens_total": sum(int(x.numel()) for x in samples),
        "epochs": args.epochs,
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "train_s": mean(train_s),
        "generate_s": mean(generate_s),
        "query_s": mean(train_s) + mean(generate_s),
        "warmup_query_s": train_s[0] + generate_s[0],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
