#!/usr/bin/env python3
"""Golden outputs of an exported ct3-pretrain model from transformers, for the CPU test that checks
ct3 against them (tests/ct3_tiny_test.cpp): the tokenizer's ids for sample texts, fp32 logits of
the whole vocabulary on two sequences, and a greedy continuation.

    python3 scripts/pretrain_golden.py models/ct3-tiny tests/data/ct3_tiny_golden
"""
import json, os, sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "The  quick\tbrown fox: 3.14159 -> résumé (naïve) 12,345",
]
PROMPT = "Question: A baker makes 12 loaves of bread each hour. How many loaves does he make in 5 hours?\nAnswer:"


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    ids = [tok(t)["input_ids"] for t in TEXTS]
    round_trip = [tok.decode(i, skip_special_tokens=True) for i in ids]
    # Two logit sequences of equal length (no padding): the first 24 ids of the first two texts.
    n = 24
    batch = torch.tensor([ids[0][:n], ids[1][:n]])
    with torch.no_grad():
        logits = model(input_ids=batch).logits.float().contiguous()
        prompt_ids = tok(PROMPT, return_tensors="pt")["input_ids"]
        out = model.generate(prompt_ids, max_new_tokens=32, do_sample=False, num_beams=1)
        # The smallest gap between the top two logits along the greedy path: ties would make a
        # bitwise-different but equally valid continuation.
        seq_logits = model(input_ids=out).logits[0, prompt_ids.shape[1] - 1:-1].float()
        top2 = seq_logits.topk(2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
    save_file({"input_ids": batch.to(torch.int64), "logits": logits}, os.path.join(out_dir, "logits.safetensors"))
    golden = {
        "texts": TEXTS, "ids": ids, "round_trip": round_trip,
        "prompt": PROMPT, "prompt_ids": prompt_ids[0].tolist(),
        "greedy_ids": out[0, prompt_ids.shape[1]:].tolist(), "greedy_min_margin": margin,
        "greedy_text": tok.decode(out[0, prompt_ids.shape[1]:], skip_special_tokens=True),
        "generated_by": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, fp32 CPU",
    }
    json.dump(golden, open(os.path.join(out_dir, "golden.json"), "w"), indent=1, ensure_ascii=False)
    print(json.dumps({"greedy_text": golden["greedy_text"], "greedy_min_margin": margin}, ensure_ascii=False))


if __name__ == "__main__":
    main()
