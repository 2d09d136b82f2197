#!/usr/bin/env bash
# The recipe of the shipped default model, models/ct3-tiny, in two stages:
#
#   scripts/train_ct3_tiny.sh data  [BUILD_DIR]   on a Debian machine with ../shared/data (CPU, ~3 min):
#       corpus (train splits + Python 3.11 stdlib + its documentation from python3.11-doc) ->
#       8192-piece BPE tokenizer -> token shards, all in .pt/ct3-tiny/ (git-ignored)
#   scripts/train_ct3_tiny.sh train [BUILD_DIR]   on one GPU (.pt/ct3-tiny carried there):
#       pretraining (run folder .pt/ct3-tiny/run), then export to models/ct3-tiny
#
# Environment: CT3_TINY_STEPS (default 1500), CT3_TINY_BATCH (micro-batch, default 64),
# CT3_TINY_LR (default 2e-3), CT3_TINY_RUN (run folder, default .pt/ct3-tiny/run), CT3_PYDOC (python3.11-doc's html/_sources; downloaded when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: train_ct3_tiny.sh data|train [BUILD_DIR]}
build=${2:-build}
pretrain=$build/models/pretrain/ct3-pretrain
work=.pt/ct3-tiny
mkdir -p "$work"
case $stage in
data)
  pydoc=${CT3_PYDOC:-}
  if [ -z "$pydoc" ]; then
    (cd "$work" && apt-get download python3.11-doc >/dev/null && rm -rf pydoc && dpkg -x python3.11-doc_*.deb pydoc)
    pydoc=$work/pydoc/usr/share/doc/python3.11/html/_sources
  fi
  "$pretrain" corpus --out "$work/corpus" --python_docs "$pydoc" --held_out_fraction 0.01 >/dev/null
  "$pretrain" tokenizer --corpus "$work/corpus" --out "$work/tokenizer" --vocab_size 8192 --model_type bpe >/dev/null
  "$pretrain" tokenize --corpus "$work/corpus" --tokenizer "$work/tokenizer.model" --out "$work/tokens"
  ;;
train)
  run=${CT3_TINY_RUN:-$work/run}
  "$pretrain" train --data "$work/tokens" --run "$run" --preset ct3-tiny --seq_len 512 \
    --micro_batch "${CT3_TINY_BATCH:-64}" --max_steps "${CT3_TINY_STEPS:-1500}" --warmup_steps 200 \
    --lr "${CT3_TINY_LR:-2e-3}" --eval_every 250 --eval_batches 0 --checkpoint_every 1000 --log_every 50
  "$pretrain" export --run "$run" --tokenizer "$work/tokenizer.model" --out models/ct3-tiny --dtype bfloat16
  ;;
*) echo "unknown stage '$stage' (expected data or train)" >&2; exit 2 ;;
esac
