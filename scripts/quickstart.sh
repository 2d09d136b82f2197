#!/usr/bin/env bash
# The main job on the embedded defaults: set up, build a knowledge base from every train set in
# ../shared/data, serve it, show the prompt's neighbours, and answer the prompt with test-time
# training (ct3-client --ttt: LoRA fine-tuned on the 32 SIFT neighbours, then greedy generation).
#   scripts/quickstart.sh "Natalia sold clips to 48 of her friends in April..."
# Data and models come from ../shared (CT3_SHARED_DIR overrides); the KB is kept in
# build/quickstart_kb and reused on the next run (CT3_QUICKSTART_KB overrides). The model is the
# shipped default, models/ct3-tiny (a 13.8M-parameter Llama the project pretrained on the train
# splits and Python text: see its README.md); CT3_MODEL or ct3-client -m picks another.
set -euo pipefail
cd "$(dirname "$0")/.."
# ct3-tiny saw GSM8K as "Question: ...\nAnswer: ...": the default prompt uses that layout.
prompt=${1:-$'Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nAnswer:'}
export CT3_EXTRA_PACKAGES="${CT3_EXTRA_PACKAGES:-} curl python3"  # the HTTP query below
scripts/setup.sh >&2
shared=${CT3_SHARED_DIR:-../shared}
kb=${CT3_QUICKSTART_KB:-build/quickstart_kb}
py=/usr/bin/python3

# 1. The knowledge base (hashed embedder: no weights to download). Resumes if interrupted.
# A KB from before decontamination (no "decontaminated": true in its manifest) holds test items:
# it is rebuilt.
if [ ! -f "$kb/manifest.json" ] || ! grep -q '"decontaminated": *true' "$kb/manifest.json"; then
  build/kb/ct3-build-kb --datasets all --data_root "$shared/data" --save_dir "$kb" --overwrite >/dev/null
fi

# 2. The retrieval server on a free loopback port, stopped (SIGTERM, drained) on exit.
tmp=$(mktemp -d)
build/server/ct3-server --knowledge_base_path "$kb" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$tmp/server.out" | head -n1)
  [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
  kill -0 $server 2>/dev/null || { cat "$tmp/server.err" >&2; exit 1; }
  sleep 0.1
done

# 3. The prompt's first neighbours (SIFT: informative and non-redundant), which the client trains on.
$py -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "k": 4}))' "$prompt" |
  curl -sf -H 'Content-Type: application/json' --data-binary @- "http://127.0.0.1:$port/v1/search" |
  $py -c "$(cat <<'PY'
import json, sys
for r in json.load(sys.stdin)["results"]:
    text = " ".join(r["text"].split())[:110]
    print(f"[{r['dataset']} #{r['row']}] cos {r['similarity']:+.3f}  {text}", file=sys.stderr)
PY
)"

# 4. The answer, with test-time training on the prompt's 32 neighbours (defaults of the original CT3).
build/client/ct3-client --server "http://127.0.0.1:$port" --ttt -p "$prompt" -n 128 --echo
