#!/usr/bin/env bash
# Pretraining throughput: ct3-pretrain against a transformers + torch loop of the same model, data,
# batch, fused AdamW and bf16 autocast (scripts/pretrain_peer.py), in the same run, on one GPU.
#
#   scripts/bench_pretrain.sh BUILD_DIR DATA_PREFIX [STEPS]
#
# DATA_PREFIX is a `ct3-pretrain tokenize` output (PREFIX_train.json, PREFIX_held_out.json). Prints a
# Markdown table: tokens/s and model FLOPs utilisation (989 TFLOP/s dense bf16 peak) of both, and
# the ratio, for the ct3-tiny shape and the Llama-3.2-1B shape (with the data's vocabulary).
set -euo pipefail
build=${1:?usage: bench_pretrain.sh BUILD_DIR DATA_PREFIX [STEPS]}
data=${2:?usage: bench_pretrain.sh BUILD_DIR DATA_PREFIX [STEPS]}
steps=${3:-40}
pretrain=$build/models/pretrain/ct3-pretrain
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| shape | micro-batch × seq | impl | tokens/s | MFU | vs peer |"
echo "|---|---|---|---:|---:|---:|"
for spec in "ct3-tiny 64" "llama3.2-1b 8"; do
  set -- $spec
  shape=$1 mb=$2
  run=$work/$shape
  "$pretrain" train --data "$data" --run "$run" --preset "$shape" --seq_len 512 --micro_batch "$mb" \
    --max_steps $((steps + 10)) --warmup_steps 5 --log_every 10 --eval_every 0 --eval_batches 1 \
    --checkpoint_every -1 >/dev/null 2>"$run.log" || { cat "$run.log" >&2; exit 1; }
  # Skip the first logged interval (CUDA context, allocator warm-up), as the peer skips its warm-up.
  ours=$(python3 - "$run/train_log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l][1:]
tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
print(f"{tps:.0f} {mfu:.4f}")
PY
)
  peer=$(python3 scripts/pretrain_peer.py "$run" "${data}_train.json" --micro_batch "$mb" --seq_len 512 --steps "$steps")
  read -r ours_tps ours_mfu <<<"$ours"
  python3 - "$shape" "$mb" "$ours_tps" "$ours_mfu" "$peer" "$run/config.json" <<'PY'
import json, sys
shape, mb, tps, mfu, peer, cfg = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5]), json.load(open(sys.argv[6]))
peer_mfu = mfu * peer["tokens_per_s"] / tps
print(f"| {shape} ({peer['params']/1e6:.1f}M) | {mb} × 512 | ct3 | {tps:,.0f} | {100*mfu:.1f}% | **{tps/peer['tokens_per_s']:.2f}×** |")
print(f"| | | {peer['impl']} | {peer['tokens_per_s']:,.0f} | {100*peer_mfu:.1f}% | |")
PY
done
