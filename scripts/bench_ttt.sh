#!/usr/bin/env bash
# Seconds per test-time-training query: ct3 (ct3-bench-ttt) against the same loop in transformers +
# peft (scripts/bench_ttt_peer.py, the original CT3 client's stack), measured in the same run, and
# against the roofline. Default: the issue's GPU setting (bf16 base, fp32 LoRA r=128 on q,k,v,up,down,
# 32 samples <= 256 tokens, 2 epochs, batch 1, then 256 greedy tokens) for Llama-3.2-1B- and
# Llama-3-8B-shaped random weights.
#   scripts/bench_ttt.sh [build-dir]            GPU (build with scripts/build_gpu.sh)
#   BENCH_DEVICE=cpu BENCH_SHAPES=stories260k BENCH_DTYPE=float32 scripts/bench_ttt.sh build
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
device=${BENCH_DEVICE:-cuda}
dtype=${BENCH_DTYPE:-bfloat16}
shapes=${BENCH_SHAPES:-"llama3.2-1b llama3-8b"}
queries=${BENCH_QUERIES:-3}
py=${PYTHON:-python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for shape in $shapes; do
  echo "bench_ttt: $shape on $device ($dtype)" >&2
  "$build/client/ct3-bench-ttt" --shape "$shape" --device "$device" --dtype "$dtype" --queries "$queries" \
    --log-level warn ${BENCH_ARGS:-} >>"$out"
  $py scripts/bench_ttt_peer.py --shape "$shape" --device "$device" --dtype "$dtype" --queries "$queries" \
    ${BENCH_ARGS:-} >>"$out"
done
$py - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| model | impl | train s | generate s | query s | vs peer | roofline s | % of roofline | cache hit s |")
print("|---|---|---|---|---|---|---|---|---|")
by_model = {}
for r in rows:
    by_model.setdefault(r["model"], {})[r["impl"]] = r
for model, impls in by_model.items():
    ct3, peer = impls.get("ct3"), impls.get("transformers+peft")
    for r in (ct3, peer):
        if r is None:
            continue
        roof = ct3["roofline_query_s"] if ct3 else None
        ratio = f"{peer['query_s'] / r['query_s']:.2f}x" if (peer and r is ct3) else ""
        eff = f"{100 * roof / r['query_s']:.0f}%" if roof else ""
        hit = f"{r['cache_hit_s']:.3f}" if "cache_hit_s" in r else ""
        print(f"| {model} | {r['impl']} | {r['train_s']:.3f} | {r['generate_s']:.3f} | {r['query_s']:.3f} | {ratio} | "
              f"{roof:.3f} | {eff} | {hit} |")
    if ct3 and peer:
        print(f"<!-- {model}: ct3 train {peer['train_s'] / ct3['train_s']:.2f}x, generate "
              f"{peer['generate_s'] / ct3['generate_s']:.2f}x faster than the peer; roofline train "
              f"{ct3['roofline_train_s']:.3f} s, generate {ct3['roofline_generate_s']:.3f} s -->")
PY
