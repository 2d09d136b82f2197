#!/usr/bin/env bash
# build_kb throughput: every train set of the data root, embedded by
#   cpu   the hashed embedder (the default; no peer: nothing else embeds this way)
#   gpu   a random-weight all-MiniLM-L6-v2-shaped (BERT) sentence-transformers model on CUDA, against
#         sentence-transformers `encode` on the same model folder and the same texts (the peer,
#         measured in the same run; needs a python3 with torch + sentence-transformers)
#
#   scripts/bench_build_kb.sh cpu|gpu [build-dir]     env: BENCH_DIR (work folder), CT3_DATA_DIR,
#                                                     BENCH_SHAPE (minilm-l6 | bert-base), BENCH_BATCH
# Prints one JSON line per measurement and, for gpu, the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-cpu}
build=${2:-build}
work=${BENCH_DIR:-/tmp/ct3-bench-build}
batch=${BENCH_BATCH:-64}
mkdir -p "$work"
build_kb=("$build/kb/ct3-build-kb" --datasets all --overwrite --restart --log-level warn)
[ -n "${CT3_DATA_DIR:-}" ] && build_kb+=(--data_root "$CT3_DATA_DIR")

summary() {  # KB folder -> one JSON line from its manifest
  python3 - "$1" "$2" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
print(json.dumps({"tool": "ct3-build-kb", "embedder": sys.argv[2], "texts": m["count"], "dim": m["dim"],
                  "seconds": round(m["build"]["seconds"], 3), "texts_per_second": round(m["build"]["texts_per_second"], 1)}))
PY
}

case "$mode" in
  cpu)
    "${build_kb[@]}" --embedder hashed --save_dir "$work/kb_hashed" >/dev/null
    summary "$work/kb_hashed" hashed
    ;;
  gpu)
    shape=${BENCH_SHAPE:-minilm-l6}
    model="$work/st_$shape"
    python3 scripts/bench_st_encode.py make-model "$model" --shape "$shape" ${BENCH_TOKENIZER:+--tokenizer "$BENCH_TOKENIZER"} >&2
    # Run twice: the first run pays CUDA start-up and kernel selection, as the peer's warm-up does.
    "${build_kb[@]}" --embedder "$model" --device cuda --batch_size "$batch" --save_dir "$work/kb_st" >/dev/null
    "${build_kb[@]}" --embedder "$model" --device cuda --batch_size "$batch" --save_dir "$work/kb_st" >/dev/null
    ours=$(summary "$work/kb_st" "$shape")
    echo "$ours"
    peer=$(python3 scripts/bench_st_encode.py encode "$model" "$work/kb_st/texts.jsonl" --device cuda --batch-size "$batch" | tail -1)
    echo "$peer"
    python3 - "$ours" "$peer" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"  {ours['embedder']} on cuda, {ours['texts']} texts: ct3-build-kb {ours['texts_per_second']:.0f} texts/s "
      f"(whole build: read, dedupe, embed, index, write) vs sentence-transformers encode "
      f"{peer['texts_per_second']:.0f} texts/s (embedding only) -> ct3 is "
      f"{ours['texts_per_second'] / peer['texts_per_second']:.2f}x")
PY
    ;;
  *) echo "usage: $0 cpu|gpu [build-dir]" >&2; exit 2 ;;
esac
