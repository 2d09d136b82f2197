#!/usr/bin/env bash
# ct3-eval end to end on loopback: a GSM8K KB served by ct3-server, every builtin task on 3 items
# with TTT (tiny settings) and bits per byte, then a rerun that resumes (nothing is redone), and the
# report files. The model is stories260K, or the tiny Llama + BPE where SentencePiece cannot load.
# Exit 77 (skipped) without ../shared.
#   eval_smoke.sh path/to/ct3-build-kb path/to/ct3-server path/to/ct3-eval
set -euo pipefail
build_kb=$1
server=$2
eval_bin=$3
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
data=$shared/data
fixtures=$(cd "$(dirname "$0")/../data" && pwd)
if [ -n "${CT3_SKIP_SENTENCEPIECE:-}" ]; then
  model_args=(--model_path "$fixtures/tiny_llama" --tokenizer "$fixtures/tiny_llama_bpe" --max_length 200)
else
  model_args=(--model_path "$shared/models/stories260K/stories260K.bin")
fi
if [ ! -f "$data/gsm8k/test.jsonl" ] || [ ! -e "${model_args[1]}" ]; then
  echo "skipped: $data or ${model_args[1]} not found (set CT3_SHARED_DIR)"; exit 77
fi
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log:"; tail -20 "$tmp/server.err" 2>/dev/null || true; exit 1; }

"$build_kb" --datasets gsm8k mbpp --limit 300 --data_root "$data" --save_dir "$tmp/kb" --log-level warn >/dev/null
"$server" --knowledge_base_path "$tmp/kb" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
pid=$!
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$tmp/server.out" | head -n1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "ct3-server exited before listening"
  sleep 0.1
done
[ -n "$port" ] || fail "no listening line"

args=("${model_args[@]}" --server "http://127.0.0.1:$port" --ttt --num_ttt_samples 4 --num_epochs 1 --lora_rank 8
      --tasks gsm8k,mawps,svamp,mathqa,aqua,mbpp,humaneval --limit 3 --bpb --data_root "$data" --out "$tmp/report"
      --log-level warn)
"$eval_bin" "${args[@]}" >"$tmp/summary1.json" 2>"$tmp/eval1.err" || fail "ct3-eval: $(tail -5 "$tmp/eval1.err")"
"$eval_bin" "${args[@]}" >"$tmp/summary2.json" 2>"$tmp/eval2.err" || fail "ct3-eval rerun: $(tail -5 "$tmp/eval2.err")"
$py - "$tmp/report" <<'PY' || fail "report"
import json, math, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
tasks = s["tasks"]
assert sorted(tasks) == sorted(["gsm8k", "mawps", "svamp", "mathqa", "aqua", "mbpp", "humaneval"]), tasks
for name, t in tasks.items():
    assert t["items"] == 3, (name, t)  # the rerun resumed: still 3 lines each
    assert t["ttt_rate"] == 1.0, (name, t)
    assert math.isfinite(t["bpb_before"]) and math.isfinite(t["bpb_after"]) and t["bpb_before"] > 0, (name, t)
    rows = [json.loads(l) for l in open(os.path.join(d, name + ".jsonl"))]
    assert len({r["id"] for r in rows}) == 3, rows
    for r in rows:
        assert "error" not in r, r
        assert len(r["neighbours"]) == 4 and len(r["losses"]) == 4, r
for f in ("report.md", "accuracy.svg", "time.svg"):
    assert os.path.getsize(os.path.join(d, f)) > 100, f
assert open(os.path.join(d, "accuracy.svg")).read().startswith("<svg")
mb = [json.loads(l) for l in open(os.path.join(d, "mbpp.jsonl"))]
assert all(r["execution"]["status"] in ("passed", "failed", "timeout", "killed") for r in mb), mb
PY
echo "ok: ct3-eval end to end"
