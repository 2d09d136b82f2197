#!/usr/bin/env bash
# Held-out perplexity of Transformer vs TTT-Linear vs TTT-MLP at matched parameters and tokens on the
# ct3-tiny corpus (issue 7, "Training and evaluation"), at context 512 and 2048, plus the paper's
# Table 1 ablation path (ttt_layers.md §4.1) at small scale. Builds nothing.
#
#   scripts/ttt_experiment.sh [BUILD_DIR]        (default build; run from anywhere)
#
# Environment:
#   DATA=.pt/ct3-tiny/tokens   token prefix (`scripts/train_ct3_tiny.sh data` writes it)
#   OUT=models/results/ttt_experiment   report.md (+ notes.md if present), ppl.svg, runs.tsv, runs/NAME
#   PRESET=ct3-tiny            model shape of the Transformer (TTT models match its parameter count)
#   TOKENS=8000000             training tokens per run (every run sees the same number)
#   BATCH_TOKENS=32768         tokens per optimizer step (micro_batch = BATCH_TOKENS / seq_len)
#   LR=2e-3 EVAL_BATCHES=16 DEVICE=auto LOG_EVERY=10 CONTEXTS="512 2048" ABLATION_CTX=2048 ABLATION=1
#   EXTRA_ARGS=                more ct3-pretrain train flags for every run
#   MAX_SECONDS=660            runs not started by then are skipped (n/a in the report; re-run to add them)
#   STYLE=mamba                backbone of the main TTT runs (the ablation rows are llama, as Table 1)
#   JOBS=1                     runs trained at once: the TTT dual form is launch-bound on a GPU (small
#                              sequential kernels), so several processes share one GPU well (JOBS=11
#                              on an H200 runs the whole experiment at once; each run's log says tok/s)
#
# Budget (one H200): the Transformer at ct3-tiny trains at ~1.07M tok/s; the TTT models are slower (the
# dual form in plain libtorch ops, no fused kernel): 6 main runs + 5 ablation runs of 8M tokens each
# come to ~7 min if TTT reaches ~250k tok/s (2×8M/1.07M + 9×8M/250k s plus start-up and evaluation);
# the ablation's "+ Mamba backbone" row is the main ttt-linear-2048 run. If TTT is slower, lower TOKENS
# or set ABLATION_CTX=512. Each run resumes (ct3-pretrain checkpoints every fifth of its steps) and a
# finished run (its result.json) is skipped, so a cut-off script is simply re-run.
# Toy check on a CPU (~1 min): PRESET=test TOKENS=6000 BATCH_TOKENS=1024 EVAL_BATCHES=2 CONTEXTS="128 256"
#   ABLATION_CTX=256 DEVICE=cpu LOG_EVERY=2 OUT=/tmp/x scripts/ttt_experiment.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pretrain=$build/models/pretrain/ct3-pretrain
DATA=${DATA:-.pt/ct3-tiny/tokens}
OUT=${OUT:-models/results/ttt_experiment}
PRESET=${PRESET:-ct3-tiny}
TOKENS=${TOKENS:-8000000}
BATCH_TOKENS=${BATCH_TOKENS:-32768}
LR=${LR:-2e-3}
EVAL_BATCHES=${EVAL_BATCHES:-16}
DEVICE=${DEVICE:-auto}
STYLE=${STYLE:-mamba}
ABLATION=${ABLATION:-1}
ABLATION_CTX=${ABLATION_CTX:-2048}
EXTRA_ARGS=${EXTRA_ARGS:-}
LOG_EVERY=${LOG_EVERY:-10}
CONTEXTS=${CONTEXTS:-512 2048}
MAX_SECONDS=${MAX_SECONDS:-660}
JOBS=${JOBS:-1}
[ -x "$pretrain" ] || { echo "ttt_experiment: $pretrain not found (build ct3-pretrain first)" >&2; exit 2; }
[ -f "${DATA}_train.json" ] || { echo "ttt_experiment: ${DATA}_train.json not found (scripts/train_ct3_tiny.sh data)" >&2; exit 2; }
mkdir -p "$OUT/runs"
runs_tsv=$OUT/runs.tsv
: >"$runs_tsv"

# Shape of the preset: the Transformer's parameter count, and the intermediate_size that gives a TTT
# model the same count (as the paper §4.3 does, changing only the SwiGLU hidden size). The formulas
# mirror LlamaConfig and TTTModelConfig::parameter_count; the report also prints the count each run logged.
shape=$(python3 - "$PRESET" <<'PY'
import sys
presets = {"ct3-tiny": (384, 1024, 6, 6), "test": (64, 176, 2, 4)}  # hidden, intermediate, layers, heads (model_presets.cpp)
p = sys.argv[1]
if p not in presets: sys.exit(f"ttt_experiment: PRESET {p} unknown here (expected {', '.join(presets)})")
print(*presets[p])
PY
)
read -r D I L H <<<"$shape"
match() {  # match TYPE STYLE B -> "intermediate ttt_params transformer_params" (vocab-free: the embeddings are shared)
  python3 - "$D" "$I" "$L" "$H" "$1" "$2" "$3" <<'PY'
import sys
D, I, L, H = map(int, sys.argv[1:5]); kind, style, b = sys.argv[5], sys.argv[6], int(sys.argv[7]); w = 4
d = D // H; f = 4 * d if kind == "mlp" else d
def ttt_block(inter):
    t = 4 * D * D + (2 * (D * w + D) if style == "mamba" else 0) + H * d * f + H * f
    if kind == "mlp": t += H * f * d + H * d
    t += 2 * H * d + H * D + H + b + 2 * D
    blk = t + 2 * D + 3 * D * inter
    if style == "mamba": blk += D + D * w + D
    return L * blk
tf = L * (4 * D * D + 3 * D * I + 2 * D)
inter = min(range(8, 4 * I, 8), key=lambda i: abs(ttt_block(i) - tf))  # a multiple of 8 (GPU-friendly)
print(inter, ttt_block(inter), tf)
PY
}

# train NAME DIR [ct3-pretrain flags...]: one run to its result.json (resumes a cut-off run).
train() {
  local name=$1 dir=$2 t0=$SECONDS
  shift 2
  # shellcheck disable=SC2086
  "$pretrain" train "$@" $EXTRA_ARGS >"$dir/result.json.tmp" 2>>"$dir/stderr.log" || {
    tail -20 "$dir/stderr.log" >&2
    echo "ttt_experiment: run $name failed (log $dir/stderr.log); re-run to resume" >&2
    return 1
  }
  mv "$dir/result.json.tmp" "$dir/result.json"
  echo "== $name: done in $((SECONDS - t0)) s" >&2
}

failed=0
# Waits for one background run when JOBS are busy (all of them with "all"), counting failures.
reap() {
  while [ "$(jobs -rp | wc -l)" -ge "${1:-1}" ]; do wait -n || failed=$((failed + 1)); done
}

# run NAME SEQ BACKBONE STYLE INTERMEDIATE [--ttt_* flags...]
run() {
  local name=$1 seq=$2 backbone=$3 style=$4 inter=$5
  shift 5
  local dir=$OUT/runs/$name mb=$((BATCH_TOKENS / seq))
  [ "$mb" -ge 1 ] || mb=1
  local steps=$(((TOKENS + mb * seq - 1) / (mb * seq)))
  local warm=$((steps / 10 > 0 ? steps / 10 : 1)) ckpt=$((steps / 5 > 0 ? steps / 5 : 1))
  mkdir -p "$dir"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seq" "$backbone" "$style" "$inter" "$*" >>"$runs_tsv"
  [ ! -s "$dir/result.json" ] || return 0
  reap "$JOBS"
  if [ "$SECONDS" -ge "$MAX_SECONDS" ]; then
    echo "== $name: skipped, ${SECONDS}s >= MAX_SECONDS $MAX_SECONDS (re-run the script to add it)" >&2
    return 0
  fi
  echo "== $name: $backbone ($style) seq $seq, micro-batch $mb, $steps steps = $((steps * mb * seq)) tokens, intermediate $inter $*" >&2
  local args=(--data "$DATA" --run "$dir" --preset "$PRESET" --backbone "$backbone" --backbone_style "$style"
    --intermediate_size "$inter" --seq_len "$seq" --micro_batch "$mb" --max_steps "$steps" --warmup_steps "$warm"
    --lr "$LR" --eval_every 0 --eval_batches "$EVAL_BATCHES" --checkpoint_every "$ckpt" --log_every "$LOG_EVERY"
    --device "$DEVICE" "$@")
  if [ "$JOBS" -gt 1 ]; then
    train "$name" "$dir" "${args[@]}" &
  else
    train "$name" "$dir" "${args[@]}" || exit 1
  fi
}

read -r lin_inter lin_params tf_params <<<"$(match linear "$STYLE" 16)"
read -r mlp_inter mlp_params _ <<<"$(match mlp "$STYLE" 16)"
echo "matched parameters (non-embedding): transformer $tf_params (intermediate $I), ttt-linear $lin_params" \
  "(intermediate $lin_inter), ttt-mlp $mlp_params (intermediate $mlp_inter); every run $TOKENS tokens" >&2
for seq in $CONTEXTS; do
  run "transformer-$seq" "$seq" transformer llama "$I"
  run "ttt-linear-$seq" "$seq" ttt-linear "$STYLE" "$lin_inter"
  run "ttt-mlp-$seq" "$seq" ttt-mlp "$STYLE" "$mlp_inter"
done
if [ "$ABLATION" = 1 ]; then
  c=$ABLATION_CTX
  # Table 1 rows on the Llama (Transformer) backbone; each adds one thing to the row before.
  read -r ab_inter _ _ <<<"$(match linear llama "$c")"
  read -r ab16_inter _ _ <<<"$(match linear llama 16)"
  run "ablation-1-linear-attention-$c" "$c" ttt-linear llama "$ab_inter" --ttt_mini_batch "$c" \
    --ttt_inner_norm false --ttt_learnable_lr false --ttt_learnable_w0 false
  run "ablation-2-learnable-w0-$c" "$c" ttt-linear llama "$ab_inter" --ttt_mini_batch "$c" \
    --ttt_inner_norm false --ttt_learnable_lr false
  run "ablation-3-ln-residual-$c" "$c" ttt-linear llama "$ab_inter" --ttt_mini_batch "$c" --ttt_learnable_lr false
  run "ablation-4-mini-batch-16-$c" "$c" ttt-linear llama "$ab16_inter" --ttt_learnable_lr false
  run "ablation-5-learnable-lr-$c" "$c" ttt-linear llama "$ab16_inter"
  [ "$STYLE" = mamba ] && [ "$c" = 2048 ] || run "ablation-6-mamba-$c" "$c" ttt-linear mamba "$lin_inter"
fi
reap 1  # all background runs
[ "$failed" = 0 ] || echo "ttt_experiment: $failed run(s) failed; the report marks them n/a (re-run to resume)" >&2
python3 scripts/ttt_experiment_report.py "$OUT" "$TOKENS" "$PRESET"
echo "report: $OUT/report.md, plot: $OUT/ppl.svg" >&2
[ "$failed" = 0 ]
