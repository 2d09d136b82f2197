#!/usr/bin/env bash
# ct3-build-kb on real data (gsm8k + mbpp from ../shared/data, hashed embedder), killed and resumed:
#   round 1: the CT3_BUILD_KB_KILL_AFTER_SHARDS=3 hook SIGKILLs the build after 3 shards of 500;
#   round 2: an external `kill -9` as soon as progress.json records a shard (shards of 50).
# --limit keeps it to ~15 s on two cores (the hashed embedder does ~1000 texts/s per core).
# Each resumed build must equal a clean build of the same arguments byte for byte (embeddings,
# texts, index, embedder state). Exit 77 (skipped) without ../shared/data.
set -uo pipefail
bin=$1
shared=${CT3_SHARED_DIR:-$(dirname "$0")/../../../shared}
data=$shared/data
if [ ! -f "$data/gsm8k/train.jsonl" ] || [ ! -f "$data/mbpp/mbpp_train.jsonl" ]; then
  echo "skipped: $data/gsm8k or $data/mbpp not found (set CT3_SHARED_DIR)"; exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ct3_build_kb_resume.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

shards_done() {  # shards recorded in a partial folder's progress.json (0 when absent)
  sed -n 's/.*"shards_done": *\([0-9]*\).*/\1/p' "$1/progress.json" 2>/dev/null | head -n1
}

same_kb() {  # two KB folders hold identical data files and counts
  for f in embeddings.f32 texts.jsonl texts.idx index.faiss embedder/hashed.bin; do
    a=$(sha256sum < "$1/$f") || fail "$1/$f missing"
    b=$(sha256sum < "$2/$f") || fail "$2/$f missing"
    [ "$a" = "$b" ] || fail "$f differs between $1 and $2"
  done
  ca=$(grep -m1 '"count"' "$1/manifest.json"); cb=$(grep -m1 '"count"' "$2/manifest.json")
  [ "$ca" = "$cb" ] || fail "count differs: $ca vs $cb"
}

common=(--datasets gsm8k mbpp --data_root "$data" --log-level warn)
round1=(--limit 1500 --shard_size 500)   # 1496 + 355 texts after decontamination: 4 shards

# Round 1: the build kills itself after 3 shards.
CT3_BUILD_KB_KILL_AFTER_SHARDS=3 "$bin" "${common[@]}" "${round1[@]}" --save_dir "$work/kb" > "$work/out1" 2> "$work/err1"
status=$?
[ "$status" -eq 137 ] || { cat "$work/err1"; fail "expected exit by SIGKILL (137), got $status"; }
[ -d "$work/kb.partial" ] || fail "no partial folder after the kill"
[ ! -e "$work/kb" ] || fail "save_dir exists after a killed build"
[ "$(shards_done "$work/kb.partial")" = 3 ] || fail "progress.json records $(shards_done "$work/kb.partial") shards, expected 3"
"$bin" "${common[@]}" "${round1[@]}" --save_dir "$work/kb" > "$work/out2" 2> "$work/err2" || { cat "$work/err2"; fail "resume failed"; }
grep -q '"resumed_texts": 1500' "$work/out2" || { cat "$work/out2"; fail "the resumed build did not start from 1500 texts"; }
[ ! -e "$work/kb.partial" ] || fail "partial folder left after success"
"$bin" "${common[@]}" "${round1[@]}" --save_dir "$work/clean" > /dev/null 2> "$work/err3" || { cat "$work/err3"; fail "clean build failed"; }
same_kb "$work/kb" "$work/clean"

# A finished KB is not rebuilt over without --overwrite.
if "$bin" "${common[@]}" "${round1[@]}" --save_dir "$work/kb" > /dev/null 2> "$work/err4"; then fail "rebuilt over an existing KB"; fi
grep -q -- "--overwrite" "$work/err4" || { cat "$work/err4"; fail "the refusal does not mention --overwrite"; }

# Round 2: killed from outside (kill -9) once a shard is on disk; 20 shards keep the build running
# long enough to be caught mid-way.
round2=(--limit 626 --shard_size 50)   # 626 + 374 texts
"$bin" "${common[@]}" "${round2[@]}" --save_dir "$work/kb2" > /dev/null 2> "$work/err5" &
pid=$!
for _ in $(seq 1 2000); do
  n=$(shards_done "$work/kb2.partial")
  [ -n "$n" ] && [ "$n" -ge 1 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
kill -9 "$pid" 2>/dev/null
wait "$pid"
status=$?
[ "$status" -eq 137 ] || { cat "$work/err5"; fail "round 2: the build was not killed mid-way (status $status)"; }
done_before=$(shards_done "$work/kb2.partial")
[ -n "$done_before" ] && [ "$done_before" -ge 1 ] || fail "round 2: no shard recorded before the kill"
"$bin" "${common[@]}" "${round2[@]}" --save_dir "$work/kb2" > "$work/out6" 2> "$work/err6" || { cat "$work/err6"; fail "round 2 resume failed"; }
grep -q '"resumed_texts": [1-9]' "$work/out6" || { cat "$work/out6"; fail "round 2 did not resume"; }
"$bin" "${common[@]}" "${round2[@]}" --save_dir "$work/clean2" > /dev/null 2> "$work/err7" || { cat "$work/err7"; fail "round 2 clean build failed"; }
same_kb "$work/kb2" "$work/clean2"

# Other arguments on a partial build are refused with a hint to --restart.
CT3_BUILD_KB_KILL_AFTER_SHARDS=1 "$bin" "${common[@]}" "${round1[@]}" --save_dir "$work/kb3" > /dev/null 2>&1
if "$bin" "${common[@]}" --limit 1500 --shard_size 400 --save_dir "$work/kb3" > /dev/null 2> "$work/err8"; then fail "resumed with another shard size"; fi
grep -q -- "--restart" "$work/err8" || { cat "$work/err8"; fail "the refusal does not mention --restart"; }
echo "ok"
