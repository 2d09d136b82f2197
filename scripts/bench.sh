#!/usr/bin/env bash
# Decode/prefill benchmarks of ct3 against a peer measured in the same run.
#
#   scripts/bench.sh cpu [build-dir]   stories260K and a Llama-3.2-1B-shaped random model on CPU
#   scripts/bench.sh gpu [build-dir]   Llama-3-8B-shaped random weights, bf16, on CUDA, against
#                                      transformers' generate on the same config and against the
#                                      HBM-bandwidth bound (weight bytes / 3.0 TB/s, the H100's copy rate)
# Prints each implementation's JSON line, then the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-cpu}
build=${2:-build}
bench=$build/models/ct3-bench
shared=${CT3_SHARED_DIR:-../shared}
if [ "$mode" = cpu ]; then
  "$bench" -m "$shared/models/stories260K/stories260K.bin" --prompt-tokens 128 --new-tokens 256 --log-level warn
  "$bench" --shape llama3.2-1b --prompt-tokens 64 --new-tokens 16 --repeats 2 --log-level warn
  exit 0
fi
ours=$("$bench" --shape llama3-8b --device cuda --dtype bfloat16 --prompt-tokens 128 --new-tokens 128 --log-level warn)
echo "$ours"
peer=$(python3 scripts/bench_hf_decode.py --config llama3-8b --device cuda --dtype bfloat16 --prompt-tokens 128 --new-tokens 128 | tail -1)
echo "$peer"
python3 - "$ours" "$peer" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
bound_ms = ours["parameter_bytes"] / 3.0e12 * 1000
print(f"decode ms/token: ct3 {ours['decode_ms_per_token']:.2f}, transformers {peer['decode_ms_per_token']:.2f}, "
      f"HBM bound {bound_ms:.2f}")
print(f"ratio transformers/ct3 (speed-up of ct3): {peer['decode_ms_per_token'] / ours['decode_ms_per_token']:.2f}x")
print(f"ratio ct3/bound (1.0 = at the bandwidth limit): {ours['decode_ms_per_token'] / bound_ms:.2f}")
print(f"prefill tok/s: ct3 {ours['prefill_tok_s']:.0f}, transformers {peer['prefill_tok_s']:.0f}, "
      f"ratio {ours['prefill_tok_s'] / peer['prefill_tok_s']:.2f}")
PY
