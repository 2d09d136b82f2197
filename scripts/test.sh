#!/usr/bin/env bash
# Sets up (installs + builds) and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir "${CT3_BUILD_DIR:-build}" --output-on-failure -j "${CT3_JOBS:-$(nproc)}" "$@"
