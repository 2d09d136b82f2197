#!/usr/bin/env bash
# ct3-generate on the real stories260K model reproduces llama2.c's reference greedy output byte for
# byte (200 forward passes from BOS = 200 sampled tokens). Exit 77 (skipped) without ../shared.
set -euo pipefail
bin=$1
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
model=$shared/models/stories260K
if [ -n "${CT3_SKIP_SENTENCEPIECE:-}" ]; then
  echo "skipped: SentencePiece is unavailable in ASan/TSan builds (RTLD_DEEPBIND)"; exit 77
fi
if [ ! -f "$model/stories260K.bin" ]; then
  echo "skipped: $model not found (set CT3_SHARED_DIR)"; exit 77
fi
out=$("$bin" -m "$model/stories260K.bin" --tokenizer "$model/tok512.model" -n 200 --temp 0 --log-level warn)
expected=$(cat "$model/expected_greedy_t0_n200.txt")
if [ "$out" != "$expected" ]; then
  echo "output differs from $model/expected_greedy_t0_n200.txt"; diff <(echo "$expected") <(echo "$out") || true; exit 1
fi
# --json reports the same text and 200 ids.
json=$("$bin" -m "$model/stories260K.bin" --tokenizer "$model/tok512.model" -n 200 --temp 0 --json --log-level warn)
echo "$json" | grep -q '"finish_reason"' || { echo "--json output lacks finish_reason: $json"; exit 1; }
# Bad input: a clear error naming the file, non-zero exit, no crash.
if err=$("$bin" -m /nonexistent/model.bin 2>&1); then echo "expected failure"; exit 1; fi
echo "$err" | grep -q "/nonexistent/model.bin" || { echo "error does not name the file: $err"; exit 1; }
echo "ok"
