#!/usr/bin/env bash
# ct3-server end to end: build a small KB from GSM8K (ct3-build-kb --limit 500), serve it on a free
# port, query every endpoint with curl, run a client shaped like the original CT3 Python client
# against POST /search/, then SIGTERM and expect exit status 0. Exit 77 (skipped) without ../shared/data.
#   server_smoke.sh path/to/ct3-build-kb path/to/ct3-server
set -euo pipefail
build_kb=$1
server=$2
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
data=$shared/data
if [ ! -f "$data/gsm8k/train.jsonl" ]; then
  echo "skipped: $data/gsm8k/train.jsonl not found (set CT3_SHARED_DIR)"; exit 77
fi
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log:"; cat "$tmp/server.err" 2>/dev/null || true; exit 1; }

"$build_kb" --datasets gsm8k --limit 500 --data_root "$data" --save_dir "$tmp/kb" --log-level warn >"$tmp/build.json"

"$server" --knowledge_base_path "$tmp/kb" --port 0 --threads 4 >"$tmp/server.out" 2>"$tmp/server.err" &
pid=$!
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$tmp/server.out" | head -n1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "ct3-server exited before listening"
  sleep 0.1
done
[ -n "$port" ] || fail "no listening line on stdout"
base=http://127.0.0.1:$port
for _ in $(seq 1 300); do
  code=$(curl -s -o "$tmp/health.json" -w '%{http_code}' "$base/health" || true)
  [ "$code" = 200 ] && break
  [ "$code" = 503 ] || [ "$code" = 000 ] || fail "/health answered $code"
  kill -0 "$pid" 2>/dev/null || fail "ct3-server exited while loading"
  sleep 0.1
done
[ "$code" = 200 ] || fail "/health never became 200"
grep -q '"status":"ok"' "$tmp/health.json" || fail "unexpected /health: $(cat "$tmp/health.json")"

# A text query: the first GSM8K question should find its own record first.
question=$($py -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["question"])' "$data/gsm8k/train.jsonl")
$py -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "k": 5}))' "$question" >"$tmp/search.req"
code=$(curl -s -o "$tmp/search.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary @"$tmp/search.req" "$base/v1/search")
[ "$code" = 200 ] || fail "/v1/search answered $code: $(cat "$tmp/search.json")"
$py - "$tmp/search.json" "$question" <<'PY' || fail "/v1/search result"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["object"] == "search.result" and r["mode"] == "sift", r
assert len(r["results"]) == 5, r
first = r["results"][0]
assert first["dataset"] == "gsm8k" and first["row"] == 0 and sys.argv[2] in first["text"], first
PY

# OpenAI-shaped embeddings.
curl -s -o "$tmp/emb.json" -H 'Content-Type: application/json' \
  --data-binary '{"input": ["How many clips did Natalia sell?"], "model": "ignored"}' "$base/v1/embeddings"
$py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["object"]=="list" and len(d["data"][0]["embedding"])>0, d' \
  "$tmp/emb.json" || fail "/v1/embeddings: $(head -c 300 "$tmp/emb.json")"

# A client shaped like the original CT3 one (docarray-style body, stdlib only).
$py - "$base" "$tmp/emb.json" <<'PY' || fail "original-style client"
import json, sys, urllib.request, uuid
base, emb_file = sys.argv[1], sys.argv[2]
embedding = json.load(open(emb_file))["data"][0]["embedding"]
doc = {"id": uuid.uuid4().hex, "query_embedding": [embedding], "num_retrieved_samples": 8}
req = urllib.request.Request(base + "/search/", data=json.dumps(doc).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(req, timeout=30) as resp:
    samples = json.loads(resp.read())["retrieved_samples"]
assert isinstance(samples, dict) and 1 <= len(samples) <= 8, samples
assert all(isinstance(t, str) and t and isinstance(s, float) and 0 <= s <= 1 for t, s in samples.items()), samples
assert any("Natalia" in t for t in samples), list(samples)[:3]
# A wrong dimension is a 400 with FastAPI's {"detail": ...}.
bad = dict(doc, query_embedding=[[0.5, 0.5]])
req = urllib.request.Request(base + "/search/", data=json.dumps(bad).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    urllib.request.urlopen(req, timeout=30)
    raise SystemExit("expected HTTP 400")
except urllib.error.HTTPError as e:
    assert e.code == 400 and "dimension" in json.loads(e.read())["detail"]
print("original client ok:", len(samples), "samples")
PY

curl -s "$base/metrics" >"$tmp/metrics.txt"
grep -q 'ct3_http_requests_total{endpoint="/v1/search",status="200"} 1' "$tmp/metrics.txt" || fail "metrics: $(head -c 600 "$tmp/metrics.txt")"
grep -q '^ct3_kb_entries [1-9]' "$tmp/metrics.txt" || fail "metrics lack ct3_kb_entries"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "ct3-server exited with $status after SIGTERM"
grep -q "drained" "$tmp/server.err" || fail "no drain log line"
echo "ok"
