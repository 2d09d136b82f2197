#!/usr/bin/env bash
# Builds the retrieval/TTT stack (kb/, server/, client/ and their tests) with sanitizers and runs its tests.
#   scripts/sanitize.sh asan     AddressSanitizer + UndefinedBehaviorSanitizer, into build-asan/
#   scripts/sanitize.sh tsan     ThreadSanitizer, into build-tsan/ (the multi-threaded tests)
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
if [ "$mode" = asan ]; then
  # Everything of the retrieval stack, and the real programs for the end-to-end program tests.
  for src in tests/kb_*_test.cpp tests/server_*_test.cpp tests/client_*_test.cpp; do
    [ -e "$src" ] && targets+=("$(basename "$src" .cpp)")
  done
  extras=(ct3-build-kb ct3-server ct3-client fuzz_server_api_replay)
else
  # TSan: the tests that run threads (Retriever batching, HTTP workers, graceful drain, the adapter
  # cache and the retrieval client shared between threads). The
  # single-threaded readers/builder tests gain nothing from it and each instrumented test costs
  # minutes of compile time in CI.
  targets=(kb_sift_test server_api_test server_http_test client_adapter_cache_test client_adapter_cache_persist_test
           client_retrieval_test)
  extras=(fuzz_server_api_replay)
fi
for extra in "${extras[@]}"; do
  ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q "^$extra:" && targets+=("$extra")
done
echo "sanitize[$mode]: building ${targets[*]}" >&2
cmake --build "$build_dir" -j "${CT3_JOBS:-$(nproc)}" --target "${targets[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp}
ctest --test-dir "$build_dir" -L retrieval --output-on-failure -j "${CT3_JOBS:-$(nproc)}" "$@"
if [ "$mode" = asan ]; then
  # The real ct3-build-kb (kill + resume), ct3-server (every endpoint, SIGTERM drain) and ct3-client
  # (TTT, cache, adapters, server failures) under ASan.
  ctest --test-dir "$build_dir" -R '^program\.(server_smoke|build_kb_resume|client_ttt)$' --output-on-failure "$@"
fi
