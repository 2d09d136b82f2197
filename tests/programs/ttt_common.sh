# Shared by the TTT program tests (client_ttt.sh, eval_smoke.sh); sourced after `set -euo pipefail`.
# Sets: shared, data, py, tmp (removed on exit), model_args (stories260K, or the tiny Llama + BPE
# where SentencePiece cannot load: ASan/TSan builds); defines fail() and start_server KB_DIR, which
# starts ct3-server ($server) on a free loopback port and sets pid, port and base.
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
data=$shared/data
fixtures=$(cd "$(dirname "$0")/../data" && pwd)
if [ -n "${CT3_SKIP_SENTENCEPIECE:-}" ]; then
  model_args=(--model_path "$fixtures/tiny_llama" --tokenizer "$fixtures/tiny_llama_bpe" --max_length 200)
else
  model_args=(--model_path "$shared/models/stories260K/stories260K.bin")
fi
if [ ! -f "$data/gsm8k/train.jsonl" ] || [ ! -e "${model_args[1]}" ]; then
  echo "skipped: $data/gsm8k/train.jsonl or ${model_args[1]} not found (set CT3_SHARED_DIR)"; exit 77
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

start_server() {
  "$server" --knowledge_base_path "$1" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  port=
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$tmp/server.out" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "ct3-server exited before listening"
    sleep 0.1
  done
  [ -n "$port" ] || fail "no listening line"
  base=http://127.0.0.1:$port
}
