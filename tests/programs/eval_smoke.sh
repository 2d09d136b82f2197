#!/usr/bin/env bash
# ct3-eval end to end on loopback: a GSM8K KB served by ct3-server, every builtin task on 3 items
# (and CoQA on a 2-story fixture)
# with TTT (tiny settings) and bits per byte, then a rerun that resumes (nothing is redone), and the
# report files. The model is stories260K, or the tiny Llama + BPE where SentencePiece cannot load.
# Exit 77 (skipped) without ../shared.
#   eval_smoke.sh path/to/ct3-build-kb path/to/ct3-server path/to/ct3-eval
set -euo pipefail
build_kb=$1
server=$2
eval_bin=$3
. "$(dirname "$0")/ttt_common.sh"

"$build_kb" --datasets gsm8k mbpp --limit 300 --data_root "$data" --save_dir "$tmp/kb" --log-level warn >/dev/null
start_server "$tmp/kb"
coqa=$(cd "$(dirname "$0")/../data/eval" && pwd)/coqa_dev_fixture.json  # 2 stories (CoQA is not in ../shared)

args=("${model_args[@]}" --server "$base" --ttt --num_ttt_samples 4 --num_epochs 1 --lora_rank 8
      --tasks "gsm8k,mawps,svamp,mathqa,aqua,mbpp,humaneval,coqa=$coqa" --limit 3 --bpb --data_root "$data" --out "$tmp/report"
      --log-level warn)
"$eval_bin" "${args[@]}" >"$tmp/summary1.json" 2>"$tmp/eval1.err" || fail "ct3-eval: $(tail -5 "$tmp/eval1.err")"
"$eval_bin" "${args[@]}" >"$tmp/summary2.json" 2>"$tmp/eval2.err" || fail "ct3-eval rerun: $(tail -5 "$tmp/eval2.err")"
$py - "$tmp/report" <<'PY' || fail "report"
import json, math, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
tasks = s["tasks"]
assert sorted(tasks) == sorted(["gsm8k", "mawps", "svamp", "mathqa", "aqua", "mbpp", "humaneval", "coqa"]), tasks
for name, t in tasks.items():
    n = 2 if name == "coqa" else 3
    assert t["items"] == n, (name, t)  # the rerun resumed: still n lines each
    unconfined = any("unconfined" in json.loads(l).get("error", "") for l in open(os.path.join(d, name + ".jsonl")))
    assert t["ttt_rate"] == 1.0 or unconfined, (name, t)
    assert math.isfinite(t["bpb_before"]) and math.isfinite(t["bpb_after"]) and t["bpb_before"] > 0, (name, t)
    rows = [json.loads(l) for l in open(os.path.join(d, name + ".jsonl"))]
    assert len({r["id"] for r in rows}) == n, rows
    for r in rows:
        # Where the kernel refuses seccomp filters the sandbox refuses to run code (as its unit tests
        # skip there); every other error is a failure.
        if "error" in r and "unconfined" in r["error"] and name in ("mbpp", "humaneval"):
            continue
        assert "error" not in r, r
        assert len(r["neighbours"]) == 4 and len(r["losses"]) == 4, r
for f in ("report.md", "accuracy.svg", "time.svg"):
    assert os.path.getsize(os.path.join(d, f)) > 100, f
assert open(os.path.join(d, "accuracy.svg")).read().startswith("<svg")
cq = [json.loads(l) for l in open(os.path.join(d, "coqa.jsonl"))]
assert all(0 <= r["em"] <= 1 and 0 <= r["f1"] <= 1 and r["golds"] for r in cq), cq
assert "CoQA: accuracy = em" in open(os.path.join(d, "report.md")).read()
mb = [json.loads(l) for l in open(os.path.join(d, "mbpp.jsonl"))]
assert all(r["execution"]["status"] in ("passed", "failed", "timeout", "killed") for r in mb if "error" not in r), mb
PY
echo "ok: ct3-eval end to end"
