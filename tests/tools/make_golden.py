#!/usr/bin/env python3
"""Creates the golden reference fixtures in tests/data/ from the reference Python libraries.

Run on the GPU machine (it has transformers, sentence-transformers, tokenizers and sentencepiece):

    python3 tests/tools/make_golden.py --inputs .gold_in --out /tmp/golden

`--inputs` holds copies of the shared tokenizer files this script needs (they are not committed):
    llama2.model (Llama-2 32k sentencepiece), tok512.model (stories260K), minilm/ (all-MiniLM-L6-v2
    tokenizer folder). The outputs are tiny randomly initialised checkpoints with their configs and
    tokenizers, and the reference outputs the C++ tests compare against:

    tiny_llama/     Llama with GQA, llama3 rope scaling, untied head, eos list   + golden.json
    tiny_qwen2/     Qwen2 with q/k/v biases, tied embeddings                      + golden.json
    tiny_bert_st/   sentence-transformers BERT (mean pooling + Normalize)        + golden.json
    tiny_mpnet_st/  sentence-transformers MPNet (relative position buckets)      + golden.json
    tokenizers/     trained byte-level BPE tokenizers + golden.json (ids for every tokenizer case)

Everything is seeded: rerunning with the same library versions gives the same files.
"""
import argparse
import json
import os
import random
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEXTS = [
    "Hello world",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nhere",
    "emoji 🤗🚀 and flags 🇫🇷",
    "accents: café naïve Ünïcödé résumé ÀÉÎÕÜ",
    "中文字符 and 日本語のテキスト and 한국어",
    "numbers 1234567 3.14159 -42 1,000,000",
    "def f(x):\n    return x**2  # comment\n",
    "whitespace   runs    here",
    "",
    "don't won't I'm they'll we've",
    "special <|end_of_text|> inline <s> [CLS] [SEP]",
    "Ω≈ç√∫˜µ≤≥÷ ‰ — “quotes” ‘single’",
    "x" * 40 + " " + "word " * 30,
]

SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog, again and again.",
    "Janet’s ducks lay 16 eggs per day.",
    "def add(a, b): return a + b",
    "short",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
]


def dump(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False))


def randomize(model, std, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def greedy(model, prompt, n):
    ids = list(prompt)
    margins = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(int(top.indices[0]))
    return ids[len(prompt):], min(margins)


def make_decoder(out, name, config, seed):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    randomize(model, 0.15, seed)
    folder = out / name
    model.save_pretrained(folder, safe_serialization=True)
    g = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(3, config.vocab_size, (2, 12), generator=g)
    labels = input_ids.clone()
    labels[0, :3] = -100
    labels[1, -2:] = -100
    with torch.no_grad():
        out_plain = model(input_ids)
        out_loss = model(input_ids, labels=labels)
        # right-padded batch: row 1 keeps 8 real tokens
        mask = torch.ones_like(input_ids)
        mask[1, 8:] = 0
        out_masked = model(input_ids, attention_mask=mask)
    prompt = [1, 5, 17, 42, 99]
    greedy_ids, margin = greedy(model, prompt, 16)
    dump(folder / "golden.json", {
        "input_ids": input_ids.tolist(),
        "logits": out_plain.logits.float().tolist(),
        "labels": labels.tolist(),
        "loss": float(out_loss.loss),
        "attention_mask": mask.tolist(),
        "masked_logits_row1_first8": out_masked.logits[1, :8].float().tolist(),
        "prompt_ids": prompt,
        "greedy_ids": greedy_ids,
        "greedy_min_margin": margin,
        "named_parameters": {n: list(p.shape) for n, p in model.named_parameters()},
    })
    print(f"{name}: loss {float(out_loss.loss):.6f} greedy {greedy_ids} min margin {margin:.4f}", flush=True)


def make_tiny_llama(out):
    from transformers import LlamaConfig
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=[2, 3], rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8},
    )
    make_decoder(out, "tiny_llama", config, 1234)


def make_tiny_qwen2(out):
    from transformers import Qwen2Config
    config = Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_theta=10000.0, use_sliding_window=False, bos_token_id=1, eos_token_id=2,
    )
    make_decoder(out, "tiny_qwen2", config, 4321)


def small_vocab(inputs, n=3000):
    return (inputs / "minilm" / "vocab.txt").read_text(encoding="utf-8").splitlines()[:n]


def make_sentence_model(out, name, kind, inputs, seed):
    from sentence_transformers import SentenceTransformer, models as st_models
    tmp = out / f"_{name}_hf"
    tmp.mkdir(parents=True, exist_ok=True)
    vocab = small_vocab(inputs)
    torch.manual_seed(seed)
    from tokenizers import Tokenizer, decoders, models as tk_models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    if kind == "bert":
        from transformers import BertConfig, BertModel
        words = vocab
        cls, sep, pad, mask = "[CLS]", "[SEP]", "[PAD]", "[MASK]"
        config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=128)
        model = BertModel(config, add_pooling_layer=False)
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    else:
        from transformers import MPNetConfig, MPNetModel
        words = ["<s>", "<pad>", "</s>", "<unk>"] + vocab[:2995] + ["<mask>"]
        cls, sep, pad, mask = "<s>", "</s>", "<pad>", "<mask>"
        config = MPNetConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=130, relative_attention_num_buckets=32,
                             pad_token_id=1, bos_token_id=0, eos_token_id=2)
        model = MPNetModel(config, add_pooling_layer=False)
        input_names = ["input_ids", "attention_mask"]
    ids = {t: i for i, t in enumerate(words)}
    tk = Tokenizer(tk_models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                               lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}",
                                                      special_tokens=[(cls, ids[cls]), (sep, ids[sep])])
    tk.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", cls_token=cls, sep_token=sep,
                                        pad_token=pad, mask_token=mask, model_max_length=512,
                                        model_input_names=input_names)
    randomize(model, 0.1, seed)
    model.eval()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    transformer = st_models.Transformer(str(tmp), max_seq_length=64)
    pooling = st_models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[transformer, pooling, st_models.Normalize()], device="cpu")
    folder = out / name
    st.save(str(folder))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    embeddings = st.encode(SENTENCES, batch_size=4, convert_to_tensor=True, normalize_embeddings=False)
    enc = st.tokenizer(SENTENCES, truncation=True, max_length=64)
    with torch.no_grad():
        first = st.tokenizer([SENTENCES[0]], return_tensors="pt")
        hidden = model(**first).last_hidden_state[0]
    dump(folder / "golden.json", {
        "sentences": SENTENCES,
        "embeddings": embeddings.float().tolist(),
        "token_ids": enc["input_ids"],
        "last_hidden_state_0": hidden.float().tolist(),
        "max_seq_length": 64,
    })
    import shutil
    shutil.rmtree(tmp)
    print(f"{name}: dim {embeddings.shape[1]}, token ids of s0 {enc['input_ids'][0]}", flush=True)


def train_bpe(corpus, style):
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers
    if style == "llama3":
        pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    if style == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
    return tok, specials


def tokenizer_corpus():
    import glob
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:120]
    lines = []
    for f in files:
        lines.extend(Path(f).read_text(encoding="utf-8", errors="ignore").splitlines())
    return lines


def make_tokenizers(out, inputs):
    import sentencepiece as spm
    from tokenizers import Tokenizer
    folder = out / "tokenizers"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []

    for name, path, shared in [("llama2_sp", inputs / "llama2.model", "shared:models/llama2-tokenizer-32k/tokenizer.model"),
                               ("tok512_sp", inputs / "tok512.model", "shared:models/stories260K/tok512.model")]:
        sp = spm.SentencePieceProcessor(model_file=str(path))
        ids = [[sp.bos_id()] + sp.encode(t) for t in TEXTS]
        cases.append({"name": name, "tokenizer": shared, "add_special_tokens": True, "max_length": 0,
                      "ids": ids, "decoded": [sp.decode(i[1:]) for i in ids]})

    minilm = Tokenizer.from_file(str(inputs / "minilm" / "tokenizer.json"))
    minilm.no_truncation()
    minilm.no_padding()
    ids = [minilm.encode(t).ids for t in TEXTS]
    cases.append({"name": "minilm_wordpiece", "tokenizer": "shared:models/all-MiniLM-L6-v2-tokenizer-only",
                  "add_special_tokens": True, "max_length": 0, "ids": ids,
                  "decoded": [minilm.decode(i, skip_special_tokens=True) for i in ids]})
    minilm.enable_truncation(max_length=16)
    ids = [minilm.encode(t).ids for t in TEXTS]
    cases.append({"name": "minilm_wordpiece_trunc16", "tokenizer": "shared:models/all-MiniLM-L6-v2-tokenizer-only",
                  "add_special_tokens": True, "max_length": 16, "ids": ids,
                  "decoded": [minilm.decode(i, skip_special_tokens=True) for i in ids]})

    corpus = tokenizer_corpus()
    for style in ["llama3", "gpt2"]:
        tok, specials = train_bpe(corpus, style)
        sub = folder / f"bpe_{style}style"
        sub.mkdir(exist_ok=True)
        tok.save(str(sub / "tokenizer.json"))
        config = {"bos_token": specials[0] if style == "llama3" else None, "eos_token": specials[-1],
                  "tokenizer_class": "PreTrainedTokenizerFast"}
        dump(sub / "tokenizer_config.json", config)
        ids = [tok.encode(t).ids for t in TEXTS]
        cases.append({"name": f"bpe_{style}style", "tokenizer": f"data:tokenizers/bpe_{style}style/tokenizer.json",
                      "add_special_tokens": True, "max_length": 0, "ids": ids,
                      "decoded": [tok.decode(i, skip_special_tokens=True) for i in ids]})
    dump(folder / "golden.json", {"texts": TEXTS, "cases": cases})
    for c in cases:
        print(f"{c['name']}: {c['ids'][0]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    import transformers
    import sentence_transformers
    import tokenizers
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "sentence_transformers": sentence_transformers.__version__, "tokenizers": tokenizers.__version__}
    print(versions, flush=True)
    dump(args.out / "VERSIONS.json", versions)
    make_tiny_llama(args.out)
    make_tiny_qwen2(args.out)
    make_sentence_model(args.out, "tiny_bert_st", "bert", args.inputs, 7)
    make_sentence_model(args.out, "tiny_mpnet_st", "mpnet", args.inputs, 8)
    make_tokenizers(args.out, args.inputs)


if __name__ == "__main__":
    sys.exit(main())
