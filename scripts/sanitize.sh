#!/usr/bin/env bash
# Builds the retrieval stack (kb/, server/ and their tests) with sanitizers and runs its tests.
#   scripts/sanitize.sh asan     AddressSanitizer + UndefinedBehaviorSanitizer, into build-asan/
#   scripts/sanitize.sh tsan     ThreadSanitizer, into build-tsan/
# The models library is left uninstrumented (CT3_SANITIZE_SCOPE=retrieval) so its objects come from
# ccache after a Release build; for a fully instrumented build configure with
# -DCT3_SANITIZE=address,undefined -DCT3_SANITIZE_SCOPE=all yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/sanitize.sh asan|tsan [ctest args]}
shift
case "$mode" in
  asan) spec=address,undefined ;;
  tsan) spec=thread ;;
  *) echo "sanitize: unknown mode '$mode' (expected asan or tsan)" >&2; exit 2 ;;
esac
build_dir=build-$mode
export CCACHE_BASEDIR=$PWD CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
  -DCT3_SANITIZE=$spec -DCT3_SANITIZE_SCOPE=retrieval >/dev/null
targets=()
for src in tests/kb_*_test.cpp tests/server_*_test.cpp; do
  [ -e "$src" ] && targets+=("$(basename "$src" .cpp)")
done
for extra in ct3-build-kb ct3-server fuzz_server_api_replay; do
  ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q "^$extra:" && targets+=("$extra")
done
echo "sanitize[$mode]: building ${targets[*]}" >&2
cmake --build "$build_dir" -j "${CT3_JOBS:-$(nproc)}" --target "${targets[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp}
ctest --test-dir "$build_dir" -L retrieval --output-on-failure -j "${CT3_JOBS:-$(nproc)}" "$@"
