#!/usr/bin/env bash
# ct3-pretrain end to end on a small real corpus: corpus (GSM8K + MBPP train splits, decontaminated)
# -> 512-piece BPE tokenizer -> token shards -> 30 training steps of the "test" shape on CPU, killed
# with SIGINT after its first checkpoint and resumed -> Hugging Face export, which ct3-generate loads
# and runs. Exit 77 (skipped) without ../shared/data or where SentencePiece cannot load.
#   pretrain_smoke.sh path/to/ct3-pretrain path/to/ct3-generate
set -euo pipefail
pretrain=$1
generate=$2
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
data=$shared/data
[ -f "$data/gsm8k/train.jsonl" ] || { echo "skipped: $data/gsm8k/train.jsonl not found (set CT3_SHARED_DIR)"; exit 77; }
[ -z "${CT3_SKIP_SENTENCEPIECE:-}" ] || { echo "skipped: SentencePiece unavailable in this build"; exit 77; }
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$pretrain" corpus --out "$tmp/corpus" --data_root "$data" --datasets gsm8k,mbpp --no_python_stdlib \
  --held_out_fraction 0.02 --log-level warn >"$tmp/corpus.json"
$py - "$tmp/corpus.json" <<'PY' || fail "corpus manifest"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["total"]["documents"] > 7000, m["total"]
assert m["total"]["held_out_documents"] > 50, m["total"]
assert m["total"]["dropped_overlap"] > 0, "the GSM8K/MBPP train splits overlap their test sets in a few items"
PY
"$pretrain" tokenizer --corpus "$tmp/corpus" --out "$tmp/tok" --vocab_size 512 --threads 2 --log-level warn >/dev/null
[ -f "$tmp/tok.model" ] || fail "no tokenizer model"
"$pretrain" tokenize --corpus "$tmp/corpus" --tokenizer "$tmp/tok.model" --out "$tmp/tokens" --log-level warn >"$tmp/tokens.json"

args=(train --data "$tmp/tokens" --run "$tmp/run" --preset test --seq_len 64 --micro_batch 8 --max_steps 30
      --warmup_steps 5 --lr 3e-3 --eval_every 10 --eval_batches 4 --checkpoint_every 10 --log_every 1 --device cpu
      --log-level warn)
# Interrupted after the first checkpoint (SIGINT: the loop checkpoints and exits 130), then resumed.
"$pretrain" "${args[@]}" >"$tmp/first.json" 2>"$tmp/first.err" &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$tmp/run/checkpoint/state.json" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -INT $pid 2>/dev/null || true
status=0; wait $pid || status=$?
[ $status = 130 ] || [ $status = 0 ] || { cat "$tmp/first.err"; fail "interrupted run exited $status"; }
"$pretrain" "${args[@]}" >"$tmp/train.json" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "resumed run"; }
$py - "$tmp/train.json" "$tmp/run/train_log.jsonl" <<'PY' || fail "training result"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["steps"] == 30 and not r["interrupted"], r
rows = [json.loads(l) for l in open(sys.argv[2])]
steps = [x["step"] for x in rows if x["kind"] == "train"]
assert steps == list(range(1, 31)), steps  # one row per step across the interruption
train = [x["loss"] for x in rows if x["kind"] == "train"]
assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.5, train
assert 0 < r["held_out_bits_per_byte"] < 8, r
PY
[ -f "$tmp/run/loss.svg" ] || fail "no loss plot"

"$pretrain" export --run "$tmp/run" --tokenizer "$tmp/tok.model" --out "$tmp/model" --log-level warn >/dev/null
out=$("$generate" -m "$tmp/model" -p "Question: How many apples?" -n 8 --temp 0 --json --log-level warn)
echo "$out" | $py -c 'import json,sys; r=json.load(sys.stdin); assert r["n_generated_tokens"] >= 1, r' \
  || fail "ct3-generate on the export: $out"
echo "ok"
