#!/usr/bin/env bash
# Prefill/decode benchmarks of ct3 against transformers (the peer), measured in the same run on the
# same random-weight configuration (only shapes matter for speed).
#
#   scripts/bench.sh cpu [build-dir]   stories260K- and Llama-3.2-1B-shaped models on CPU, fp32
#   scripts/bench.sh gpu [build-dir]   Llama-3-8B-shaped, bf16, on CUDA; also against the HBM-bandwidth
#                                      bound (weight bytes / 3.0 TB/s, the H100's measured copy rate)
# The peer needs a python3 with torch and transformers (the GPU machine has one); without it only
# ct3's figures are printed. Each line: the two JSON results, then the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-cpu}
bench=${2:-build}/models/ct3-bench
have_peer=0
python3 -c 'import torch, transformers' 2>/dev/null && have_peer=1

compare() {  # shape device dtype prompt_tokens new_tokens
  local ours peer
  ours=$("$bench" --shape "$1" --device "$2" --dtype "$3" --prompt-tokens "$4" --new-tokens "$5" --log-level warn)
  echo "$ours"
  [ "$have_peer" = 1 ] || return 0
  peer=$(python3 scripts/bench_hf_decode.py --config "$1" --device "${2%%:*}" --dtype "$3" --prompt-tokens "$4" \
         --new-tokens "$5" --threads "$(echo "$ours" | python3 -c 'import json,sys;print(json.load(sys.stdin)["threads"])')" | tail -1)
  echo "$peer"
  python3 - "$ours" "$peer" "$2" <<'PY'
import json, sys
ours, peer, device = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"  {ours['model']} on {device}: decode ms/token ct3 {ours['decode_ms_per_token']:.3f} vs transformers "
      f"{peer['decode_ms_per_token']:.3f} -> ct3 is {peer['decode_ms_per_token'] / ours['decode_ms_per_token']:.2f}x; "
      f"prefill tok/s ct3 {ours['prefill_tok_s']:.0f} vs {peer['prefill_tok_s']:.0f} -> "
      f"{ours['prefill_tok_s'] / peer['prefill_tok_s']:.2f}x")
if device.startswith("cuda"):
    bound_ms = ours["parameter_bytes"] / 3.0e12 * 1000
    print(f"  HBM bound {bound_ms:.2f} ms/token; ct3 at {bound_ms / ours['decode_ms_per_token']:.0%} of it, "
          f"transformers at {bound_ms / peer['decode_ms_per_token']:.0%}")
PY
}

if [ "$mode" = cpu ]; then
  compare stories260k cpu float32 128 256
  compare llama3.2-1b cpu float32 64 16
else
  compare llama3-8b cuda bfloat16 128 128
fi
