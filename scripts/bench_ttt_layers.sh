#!/usr/bin/env bash
# TTT-layer speed on one GPU (issue 7, "Benchmarks"): ct3-bench-ttt-layers for the 125M and 1.3B
# shapes: (a) training tokens/s of the dual vs the primal form at seq 2048, (b) prefill and decode
# ms/token vs context 1k..32k for TTT-Linear, TTT-MLP and the Transformer with its KV cache. Builds
# nothing.
#
#   scripts/bench_ttt_layers.sh BUILD_DIR [OUT_DIR]
#
# Environment: SIZES="125m 1.3b", DEVICE=cuda, DTYPE=bfloat16, CONTEXTS=1024,...,32768, BATCH=1,
# DECODE_TOKENS=16, TRAIN_BATCH=4 (125m) / 1 (1.3b), REPEATS=2, BACKBONE=mamba, EXTRA_ARGS=.
# Writes OUT_DIR/SIZE.jsonl (the JSON lines) and OUT_DIR/SIZE.txt (the tables); default OUT_DIR
# models/results/bench_ttt_layers. The primal form is slow by design (token by token): at 1.3B it is measured
# with --repeats 1 via REPEATS, or skipped with EXTRA_ARGS=--skip-primal if time is short.
set -euo pipefail
build=${1:?usage: bench_ttt_layers.sh BUILD_DIR [OUT_DIR]}
out=${2:-models/results/bench_ttt_layers}
bench=$build/models/ct3-bench-ttt-layers
[ -x "$bench" ] || { echo "bench_ttt_layers: $bench not found (build the ct3-bench-ttt-layers target)" >&2; exit 2; }
mkdir -p "$out"
SIZES=${SIZES:-125m 1.3b}
CONTEXTS=${CONTEXTS:-1024,2048,4096,8192,16384,32768}
for size in $SIZES; do
  tb=${TRAIN_BATCH:-}
  [ -n "$tb" ] || { [ "$size" = 125m ] && tb=4 || tb=1; }
  echo "== $size" >&2
  # shellcheck disable=SC2086
  "$bench" --size "$size" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}" --backbone "${BACKBONE:-mamba}" \
    --contexts "$CONTEXTS" --batch "${BATCH:-1}" --decode-tokens "${DECODE_TOKENS:-16}" --train-seq 2048 \
    --train-batch "$tb" --repeats "${REPEATS:-2}" ${EXTRA_ARGS:-} >"$out/$size.jsonl" 2> >(tee "$out/$size.txt" >&2)
done
echo "results: $out/*.jsonl, tables: $out/*.txt" >&2
