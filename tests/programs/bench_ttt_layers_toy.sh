#!/usr/bin/env bash
# ct3-bench-ttt-layers at toy size on the CPU: every measurement kind is printed as JSON (training
# dual + primal + the Transformer, prefill/decode per context and model, the ratios), and a bad
# --models value is a clear error.
set -euo pipefail
bin=$1
out=$("$bin" --size toy --contexts 16,32 --train-seq 32 --decode-tokens 2 --repeats 1 -t 1 --log-level warn 2>/dev/null)
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
train = {(r["model"], r["form"]) for r in rows if r["bench"] == "train"}
need = {("ttt-linear", "dual"), ("ttt-linear", "primal"), ("ttt-mlp", "dual"), ("ttt-mlp", "primal"), ("transformer", "kv")}
assert need <= train, f"training rows missing: {need - train}"
infer = {(r["model"], r["context"]) for r in rows if r["bench"] == "infer"}
assert len(infer) == 6, f"expected 3 models x 2 contexts, got {sorted(infer)}"
assert all(r["prefill_ms_per_token"] > 0 and r["decode_ms_per_token"] > 0 for r in rows if r["bench"] == "infer")
ratios = [r for r in rows if r["bench"] == "ratios"][0]["ratios"]
for key in ("ttt-linear dual/primal train tokens/s", "ttt-mlp / transformer decode ms/token @32"):
    assert key in ratios and ratios[key] > 0, f"ratio {key} missing: {sorted(ratios)}"
PY
if err=$("$bin" --size toy --models ttt-linear,rnn 2>&1); then echo "expected failure"; exit 1; fi
echo "$err" | grep -q "rnn" || { echo "error does not name the bad model: $err"; exit 1; }
echo "ok"
