#!/usr/bin/env bash
# The whole evaluation suite for one model and one KB: without TTT ("base"), TTT on SIFT-selected
# neighbours ("sift") and TTT on plain FAISS top-k neighbours ("faiss"), each with bits per byte, then
# the side-by-side comparison (compare.md, compare.json, accuracy/bpb/time SVGs) in --out.
#
#   scripts/eval_suite.sh --out eval/results/my-run                       # all test items, CPU
#   scripts/eval_suite.sh --out R --device cuda --procs 12 --limit 50,100,200 --deadline 500
#
# --limit takes one size or growing stages: each stage extends the previous one by resuming (the
# sample of a smaller limit is a prefix of a larger one's), so a --deadline (seconds) that stops the
# run mid-stage still leaves every finished item and a comparison over the items all modes scored.
# --procs runs that many ct3-eval processes per mode, each on its own --shard, sharing the device
# (the tiny default model is launch-bound, so a GPU serves several). Retrieval is in-process from
# --kb (default: build/quickstart_kb, built from every train split when missing); --server URL uses a
# running ct3-server instead. --add_mode 'NAME=FLAGS' adds a mode of your own (e.g.
# 'sift-lr5e-4=--ttt --retrieval sift --learning_rate 5e-4'; the KB flags are added). Arguments after
# `--` go to every ct3-eval (e.g. -- --num_epochs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
out= model= kb= limits=0 procs=1 device=cpu build=${CT3_BUILD_DIR:-build} deadline=0 server=
tasks=gsm8k,mawps,svamp,mathqa,aqua,mbpp,humaneval modes=base,sift,faiss
data=${CT3_DATA_DIR:-${CT3_SHARED_DIR:-../shared}/data}
extra=()
declare -A custom=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --kb) kb=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --limit) limits=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --data_root) data=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --add_mode) custom[${2%%=*}]=${2#*=}; modes+=,${2%%=*}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "eval_suite: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "eval_suite: --out FOLDER is required" >&2; exit 2; }
for bin in ct3-eval ct3-eval-compare; do
  [ -x "$build/eval/$bin" ] || { echo "eval_suite: $build/eval/$bin is missing: build it first (cmake --build $build)" >&2; exit 1; }
done
if [ -z "$server" ]; then
  kb=${kb:-build/quickstart_kb}
  if [ ! -f "$kb/manifest.json" ] || ! grep -q '"decontaminated": *true' "$kb/manifest.json"; then
    echo "eval_suite: building the default KB (every train split, decontaminated) in $kb" >&2
    "$build/kb/ct3-build-kb" --datasets all --data_root "$data" --save_dir "$kb" --overwrite --log-level warn >/dev/null
  fi
  retrieval=(--knowledge_base_path "$kb")
else
  retrieval=(--server "$server")
fi
common=(--tasks "$tasks" --data_root "$data" --device "$device" --bpb --log-level warn)
[ -n "$model" ] && common+=(-m "$model")
# Several processes share the CPU cores for their host-side work.
threads=$(( $(nproc) / procs )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads
start=$SECONDS
mkdir -p "$out"
IFS=, read -r -a stage_list <<<"$limits"
IFS=, read -r -a mode_list <<<"$modes"
for limit in "${stage_list[@]}"; do
  for mode in "${mode_list[@]}"; do
    case $mode in
      base) flags=() ;;
      sift) flags=(--ttt --retrieval sift "${retrieval[@]}") ;;
      faiss) flags=(--ttt --retrieval faiss "${retrieval[@]}") ;;
      *)
        [ -n "${custom[$mode]:-}" ] || { echo "eval_suite: unknown mode '$mode' (base, sift, faiss, or --add_mode)" >&2; exit 2; }
        read -r -a flags <<<"${custom[$mode]}"
        flags+=("${retrieval[@]}") ;;
    esac
    left=0
    if [ "$deadline" -gt 0 ]; then
      left=$(( deadline - (SECONDS - start) ))
      [ "$left" -gt 5 ] || { echo "eval_suite: deadline reached before $mode at limit $limit" >&2; break 2; }
    fi
    echo "eval_suite: $mode, limit $limit, $procs process(es), $(( SECONDS - start )) s in" >&2
    pids=()
    for ((k = 0; k < procs; k++)); do
      cmd=("$build/eval/ct3-eval" "${common[@]}" "${flags[@]}" --limit "$limit" --shard "$k/$procs" --out "$out/$mode" "${extra[@]}")
      if [ "$left" -gt 0 ]; then cmd=(timeout -s INT "$left" "${cmd[@]}"); fi
      "${cmd[@]}" >/dev/null 2>>"$out/$mode.log" &
      pids+=($!)
    done
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    if [ "$status" -ne 0 ]; then
      if [ "$deadline" -gt 0 ] && [ $(( SECONDS - start )) -ge "$deadline" ]; then
        echo "eval_suite: deadline reached during $mode at limit $limit" >&2; break 2
      fi
      echo "eval_suite: ct3-eval failed for $mode (exit $status); see $out/$mode.log" >&2; exit 1
    fi
  done
done
runs=()
for mode in "${mode_list[@]}"; do
  [ -d "$out/$mode" ] || continue
  "$build/eval/ct3-eval" --out "$out/$mode" --report_only --tasks "$tasks" --data_root "$data" --log-level warn >/dev/null
  runs+=("$mode=$out/$mode")
done
if [ "${#runs[@]}" -ge 2 ]; then
  "$build/eval/ct3-eval-compare" --out "$out" "${runs[@]}"
fi
echo "eval_suite: done in $(( SECONDS - start )) s; report in $out" >&2
