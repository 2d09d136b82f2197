#!/usr/bin/env bash
# The main job on the embedded defaults: set up, build, and answer a prompt.
#   scripts/quickstart.sh "Once upon a time"
# Today: generation with the real stories260K model from ../shared (CT3_SHARED_DIR overrides).
# The KB → server → TTT client pipeline is added here as those parts land.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"Once upon a time"}
scripts/setup.sh >&2
shared=${CT3_SHARED_DIR:-../shared}
model=$shared/models/stories260K
exec build/models/ct3-generate -m "$model/stories260K.bin" --tokenizer "$model/tok512.model" \
     -p "$prompt" -n 200 --temp 0 --echo
