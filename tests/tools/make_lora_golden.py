#!/usr/bin/env python3
"""Golden fixtures for LoRA test-time training, from peft + torch (run on the GPU machine):

    python3 tests/tools/make_lora_golden.py --model tests/data/tiny_llama \
        --ct3-adapter tests/data/lora_golden/ct3_adapter --out /tmp/lora_golden

The base is the committed tiny random Llama (tests/data/tiny_llama). Everything runs on the CPU in
float32 so the C++ tests (tests/client_lora_golden_test.cpp) can compare at rtol 1e-4. Writes:

    initial_adapter/    the PEFT-initialised adapter (A Kaiming-uniform from torch's seeded RNG, B = 0)
    trained_adapter/    the adapter after the TTT loop below, saved by peft
    golden.safetensors  first-step LoRA gradients (batch 1 and a padded batch of 2), logits of the
                        trained adapter and of the ct3-written adapter on a probe
    golden.json         samples, probe, options, per-step losses

The TTT loop is CT3's `TTTModel.fine_tune`: a fresh torch.optim.AdamW over the LoRA parameters,
batch 1, no shuffling; per step zero_grad, forward with labels (whole text), backward,
clip_grad_norm_(1.0), step. Dropout is 0 so the result is deterministic. The "vice versa" check:
`--ct3-adapter` is an adapter written by ct3's save_peft_adapter, loaded here with PeftModel.
"""
import argparse
import json
import random
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
OPTIONS = {"r": 8, "lora_alpha": 16, "lr": 1e-3, "weight_decay": 0.01, "max_grad_norm": 1.0, "num_epochs": 2}
BOS, EOS, PAD = 1, 2, 2


def load_base(path):
    model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.config.use_cache = False
    return model.eval()


def make_samples():
    rng = random.Random(0)
    samples = []
    for n in (12, 7, 20, 16, 9):
        samples.append([BOS] + [rng.randrange(4, 512) for _ in range(n)] + [EOS])
    return samples


def lora_grads(peft_model):
    return {f"grad/{name}": p.grad.detach().clone() for name, p in peft_model.named_parameters() if p.requires_grad}


def file_name(live_name):
    # peft's live names carry the adapter name ("lora_A.default.weight"); files drop it.
    return live_name.replace(".default.", ".")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--ct3-adapter", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(0)

    config = LoraConfig(r=OPTIONS["r"], lora_alpha=OPTIONS["lora_alpha"], lora_dropout=0.0, bias="none",
                        target_modules=TARGETS, task_type="CAUSAL_LM")
    peft_model = get_peft_model(load_base(args.model), config)
    peft_model.save_pretrained(out / "initial_adapter", safe_serialization=True)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    samples = make_samples()
    tensors = {}

    # One padded batch of 2 (right padding with EOS, labels -100, length a multiple of 8), grads only.
    rows = [samples[0], samples[2]]
    T = (max(len(r) for r in rows) + 7) // 8 * 8
    ids = torch.full((2, T), PAD, dtype=torch.long)
    mask = torch.zeros((2, T), dtype=torch.long)
    labels = torch.full((2, T), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        labels[i, : len(r)] = torch.tensor(r)
    peft_model.train()
    peft_model.zero_grad()
    batch2 = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
    batch2.backward()
    tensors.update({file_name(k.replace("grad/", "batch2_grad/")): v for k, v in lora_grads(peft_model).items()})
    peft_model.zero_grad()

    # The TTT loop.
    optimizer = torch.optim.AdamW(trainable, lr=OPTIONS["lr"], weight_decay=OPTIONS["weight_decay"])
    losses = []
    for epoch in range(OPTIONS["num_epochs"]):
        for sample in samples:
            optimizer.zero_grad()
            x = torch.tensor([sample])
            loss = peft_model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
            loss.backward()
            if not losses:
                tensors.update({file_name(k): v for k, v in lora_grads(peft_model).items()})
            torch.nn.utils.clip_grad_norm_(trainable, OPTIONS["max_grad_norm"])
            optimizer.step()
            losses.append(loss.item())
    peft_model.eval()
    peft_model.save_pretrained(out / "trained_adapter", safe_serialization=True)

    probe = torch.tensor([[1, 17, 300, 42, 5, 99, 250, 3, 77, 11]])
    with torch.no_grad():
        tensors["logits/trained"] = peft_model(input_ids=probe).logits[0].float()
        ct3_model = PeftModel.from_pretrained(load_base(args.model), args.ct3_adapter).eval()
        tensors["logits/ct3_adapter"] = ct3_model(input_ids=probe).logits[0].float()
        tensors["logits/base"] = load_base(args.model)(input_ids=probe).logits[0].float()
    save_file({k: v.contiguous() for k, v in tensors.items()}, out / "golden.safetensors")
    import peft
    import transformers
    golden = {
        "samples": samples,
        "batch2_rows": [0, 2],
        "batch2_loss": batch2.item(),
        "probe": probe[0].tolist(),
        "options": OPTIONS,
        "targets": TARGETS,
        "losses": losses,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (out / "golden.json").write_text(json.dumps(golden, indent=1))
    print(json.dumps({"losses": losses, "batch2_loss": batch2.item()}))


if __name__ == "__main__":
    main()
