#!/usr/bin/env bash
# Sets up (installs + builds) and runs the whole test suite: the Release build with ctest, then the
# retrieval stack (kb/, server/) under ASan+UBSan and under TSan (scripts/sanitize.sh), then a
# bounded fuzz run (scripts/fuzz.sh, CT3_FUZZ_SECONDS, default 30).
#   scripts/test.sh                  everything
#   CT3_SKIP_SANITIZERS=1 scripts/test.sh   the Release suite only
set -euo pipefail
cd "$(dirname "$0")/.."
# clang + its runtime build the libFuzzer target; curl and python3 drive the program tests.
export CT3_EXTRA_PACKAGES="${CT3_EXTRA_PACKAGES:-} clang libclang-rt-14-dev curl python3"
scripts/setup.sh
ctest --test-dir "${CT3_BUILD_DIR:-build}" --output-on-failure -j "${CT3_JOBS:-$(nproc)}" "$@"
if [ -z "${CT3_SKIP_SANITIZERS:-}" ]; then
  scripts/sanitize.sh asan
  scripts/sanitize.sh tsan
  scripts/fuzz.sh "${CT3_FUZZ_SECONDS:-30}"   # bounded libFuzzer run on the server's request handling
fi
