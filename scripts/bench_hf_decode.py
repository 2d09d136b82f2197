#!/usr/bin/env python3
"""The peer of `ct3-bench`: transformers' decode speed on the same random-weight configuration.

    python3 scripts/bench_hf_decode.py --config llama3-8b --device cuda --dtype bfloat16 \
        --prompt-tokens 128 --new-tokens 128 --json out.json

Prints one JSON line: {"impl": "transformers", "config", "device", "dtype", "prefill_tok_s",
"decode_ms_per_token", "decode_tok_s"}. Weights are random (no checkpoint needed): only speed is
measured. Greedy decoding with the KV cache, EOS ignored, so exactly --new-tokens are generated.
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

CONFIGS = {
    # the shapes of the public checkpoints' config.json files
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      rope_theta=500000.0, tie_word_embeddings=False),
    "stories260k": dict(vocab_size=512, hidden_size=64, intermediate_size=172, num_hidden_layers=5,
                        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                        rope_theta=10000.0, tie_word_embeddings=True),
    "llama3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                        rope_theta=500000.0, tie_word_embeddings=True),
}


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="llama3-8b", choices=sorted(CONFIGS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    config = LlamaConfig(**CONFIGS[args.config])
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    ids = torch.randint(10, config.vocab_size, (1, args.prompt_tokens), device=args.device)
    gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None,
               pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids, **dict(gen, max_new_tokens=4, min_new_tokens=4))  # warm-up
        sync(args.device)
        t0 = time.perf_counter()
        model(ids)
        sync(args.device)
        prefill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(ids, **gen)
        sync(args.device)
        total_s = time.perf_counter() - t0
    decode_s = max(total_s - prefill_s, 1e-9)
    result = {"impl": "transformers", "config": args.config, "threads": torch.get_num_threads(), "device": args.device, "dtype": args.dtype,
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
              "prefill_tok_s": args.prompt_tokens / prefill_s,
              "decode_ms_per_token": 1000 * decode_s / args.new_tokens,
              "decode_tok_s": args.new_tokens / decode_s}
    print(json.dumps(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
