#!/usr/bin/env bash
# ct3-client end to end on loopback: ct3-build-kb builds a GSM8K KB, ct3-server serves it, and
# ct3-client (the real stories260K model and tokenizer) answers with test-time training. Checks the
# JSON report (neighbours, losses, timings), the adapter cache within a run (JSONL batch) and across
# runs (--adapter_cache_dir), --save_adapter / --adapter giving the same greedy answer, and failure
# handling once the server is gone (--ttt_fallback vs a clear error).
# The model is the real stories260K; where SentencePiece cannot load (ASan/TSan builds) it is the
# tiny random Llama of tests/data with a 512-token byte-level BPE tokenizer (tests/data/tiny_llama_bpe).
# Exit 77 (skipped) without ../shared.
#   client_ttt.sh path/to/ct3-build-kb path/to/ct3-server path/to/ct3-client
set -euo pipefail
build_kb=$1
server=$2
client=$3
. "$(dirname "$0")/ttt_common.sh"

"$build_kb" --datasets gsm8k --limit 300 --data_root "$data" --save_dir "$tmp/kb" --log-level warn >/dev/null
start_server "$tmp/kb"

q0=$($py -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["question"])' "$data/gsm8k/train.jsonl")
common=("${model_args[@]}" --server "$base" --num_ttt_samples 8 --num_epochs 1 --lora_rank 8
        -n 24 --log-level warn)

# 1. One question with TTT (the client waits for the server's KB to load: /health 503 is retried).
"$client" "${common[@]}" --ttt --json -p "$q0" --save_adapter "$tmp/adapter" >"$tmp/one.json" 2>"$tmp/one.err" ||
  fail "ct3-client --ttt: $(cat "$tmp/one.err")"
$py - "$tmp/one.json" "$q0" <<'PY' || fail "TTT report: $(head -c 600 "$tmp/one.json")"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["ttt"] is True and r["fallback"] is None and r["cache"]["status"] == "off", r
assert len(r["neighbours"]) == 8 and [n["rank"] for n in r["neighbours"]] == list(range(8)), r["neighbours"]
first = r["neighbours"][0]
assert first["dataset"] == "gsm8k" and first["row"] == 0 and sys.argv[2] in first["text"], first
assert len(r["losses"]) == 8 and all(math.isfinite(l) and l > 0 for l in r["losses"]), r["losses"]
assert r["train_tokens"] > 8 and r["n_generated_tokens"] > 0 and isinstance(r["answer"], str), r
t = r["timings_ms"]
assert all(t[k] >= 0 for k in ("embed", "retrieve", "train", "generate")) and t["train"] > 0, t
assert t["total"] >= t["train"] + t["generate"], t
PY
[ -f "$tmp/adapter/adapter_model.safetensors" ] && [ -f "$tmp/adapter/adapter_config.json" ] || fail "--save_adapter"

# 2. The saved adapter answers the same question with the same greedy tokens (no server needed).
"$client" "${model_args[@]}" -n 24 --log-level warn --adapter "$tmp/adapter" --json -p "$q0" \
  >"$tmp/reload.json" 2>"$tmp/reload.err" || fail "--adapter: $(cat "$tmp/reload.err")"
$py - "$tmp/one.json" "$tmp/reload.json" <<'PY' || fail "reloaded adapter answer differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["answer"] == b["answer"], (a["answer"], b["answer"])
assert b["ttt"] is False and b["neighbours"] == [], b
PY

# 3. Adapter cache in one run: the same question again hits, a code question misses.
$py - "$q0" >"$tmp/batch.jsonl" <<'PY'
import json, sys
q = sys.argv[1]
for i, p in enumerate([q, q, "def add(a, b):\n    return a + b"]):
    print(json.dumps({"id": f"q{i}", "prompt": p}))
PY
"$client" "${common[@]}" --ttt --local_adapter_managing --batch <"$tmp/batch.jsonl" >"$tmp/batch.out" 2>"$tmp/batch.err" ||
  fail "--batch: $(cat "$tmp/batch.err")"
$py - "$tmp/batch.out" <<'PY' || fail "cache within a run: $(cat "$tmp/batch.out" | head -c 800)"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["id"] for r in rows] == ["q0", "q1", "q2"], rows
assert [r["cache"]["status"] for r in rows] == ["miss", "hit", "miss"], [r["cache"] for r in rows]
assert rows[1]["cache"]["score"] > 0.99 and rows[1]["losses"] == [] and rows[1]["ttt"] is True, rows[1]
assert rows[0]["answer"] == rows[1]["answer"], (rows[0]["answer"], rows[1]["answer"])
PY

# 4. Across runs: --adapter_cache_dir keeps trained adapters.
for run in 1 2; do
  "$client" "${common[@]}" --ttt --adapter_cache_dir "$tmp/cache" --json -p "$q0" >"$tmp/persist$run.json" \
    2>"$tmp/persist$run.err" || fail "--adapter_cache_dir run $run: $(cat "$tmp/persist$run.err")"
done
$py - "$tmp/persist1.json" "$tmp/persist2.json" <<'PY' || fail "persistent cache"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["cache"]["status"] == "miss" and b["cache"]["status"] == "hit", (a["cache"], b["cache"])
assert a["answer"] == b["answer"]
PY

# 5. In-process retrieval from the same KB folder (--knowledge_base_path): the same neighbours,
#    hence the same adapter and the same greedy answer as through the server.
common_local=("${common[@]/--server/--knowledge_base_path}")
common_local=("${common_local[@]/$base/$tmp/kb}")
"$client" "${common_local[@]}" --ttt --json -p "$q0" >"$tmp/local.json" 2>"$tmp/local.err" ||
  fail "--knowledge_base_path: $(cat "$tmp/local.err")"
$py - "$tmp/one.json" "$tmp/local.json" <<'PY' || fail "in-process retrieval differs from the server's"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in b["neighbours"]], (a["neighbours"], b["neighbours"])
assert a["answer"] == b["answer"] and b["ttt"] is True, (a["answer"], b["answer"])
PY

# 6. Server gone: a clear error naming the URL, or (--ttt_fallback) an answer without TTT that says so.
kill -TERM "$pid"; wait "$pid" || true; pid=
if "$client" "${common[@]}" --ttt --server_retries 2 -p "$q0" >"$tmp/down.out" 2>"$tmp/down.err"; then
  fail "ct3-client succeeded without a server"
fi
grep -q "127.0.0.1:$port" "$tmp/down.err" || fail "error does not name the server: $(cat "$tmp/down.err")"
"$client" "${common[@]}" --ttt --ttt_fallback --server_retries 2 --json -p "$q0" >"$tmp/fallback.json" \
  2>"$tmp/fallback.err" || fail "--ttt_fallback: $(cat "$tmp/fallback.err")"
$py - "$tmp/fallback.json" <<'PY' || fail "fallback report: $(cat "$tmp/fallback.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ttt"] is False and r["fallback"] and r["n_generated_tokens"] > 0, r
PY
echo "ok: ct3-client TTT end to end (port $port)"
