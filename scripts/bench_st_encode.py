#!/usr/bin/env python3
"""The peer of scripts/bench_build_kb.sh: sentence-transformers encode on the same model and texts.

  make-model OUT [--shape minilm-l6|mpnet-base]   a random-weight sentence-transformers folder of a
                                                 public embedder's shape (tokenizer files from
                                                 ../shared/models/all-MiniLM-L6-v2-tokenizer-only)
  encode MODEL TEXTS.jsonl [--device cuda] [--batch-size 64]
                                                 encodes the "text" field of every line (a ct3 KB's
                                                 texts.jsonl) and prints one JSON line with texts/s

Only shapes matter for speed, so random weights measure exactly what a trained model would cost.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def make_model(out: Path, shape: str, tokenizer_dir: Path):
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(tokenizer_dir)
    if shape == "bert-base":  # bert-base-uncased's shape with the same WordPiece vocabulary
        config.hidden_size, config.num_hidden_layers, config.num_attention_heads = 768, 12, 12
        config.intermediate_size = 3072
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(tokenizer_dir, out)
    model.save_pretrained(out, safe_serialization=True)
    (out / "2_Normalize").mkdir(exist_ok=True)
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = config.hidden_size
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    print(json.dumps({"model": str(out), "shape": shape, "hidden_size": config.hidden_size,
                      "layers": config.num_hidden_layers}))


def encode(model_dir: str, texts_path: str, device: str, batch_size: int):
    import torch
    from sentence_transformers import SentenceTransformer

    texts = [json.loads(line)["text"] for line in open(texts_path, encoding="utf-8") if line.strip()]
    model = SentenceTransformer(model_dir, device=device)
    model.encode(texts[:batch_size * 2], batch_size=batch_size)  # warm-up (CUDA context, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({"peer": "sentence-transformers", "texts": len(texts), "dim": int(vectors.shape[1]),
                      "seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1),
                      "max_seq_length": model.max_seq_length, "device": device, "batch_size": batch_size}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("out", type=Path)
    m.add_argument("--shape", default="minilm-l6", choices=["minilm-l6", "bert-base"])
    m.add_argument("--tokenizer", type=Path,
                   default=Path(__file__).resolve().parents[2] / "shared/models/all-MiniLM-L6-v2-tokenizer-only")
    e = sub.add_parser("encode")
    e.add_argument("model")
    e.add_argument("texts")
    e.add_argument("--device", default="cuda")
    e.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if args.cmd == "make-model":
        make_model(args.out, args.shape, args.tokenizer)
    else:
        encode(args.model, args.texts, args.device, args.batch_size)


if __name__ == "__main__":
    sys.exit(main())
