#!/usr/bin/env bash
# Fuzzes the server's request handling (tests/fuzz/fuzz_server_api.cpp) with libFuzzer under
# ASan/UBSan for a bounded time, starting from the seed corpus.
#   scripts/fuzz.sh [seconds=60] [extra libFuzzer flags...]
# Configures build-fuzz/ with clang and -DCT3_BUILD_FUZZERS=ON and builds only the fuzzer, which
# compiles just the torch-free server/kb sources it needs (libtorch is not rebuilt with clang).
# New interesting inputs stay in build-fuzz/corpus (a copy: tests/fuzz/corpus is not modified);
# a crash leaves build-fuzz/crash-* and makes this script exit non-zero. To keep a reproducer as a
# regression test, copy it into tests/fuzz/corpus/ (ctest fuzz_server_api_replay runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
build_dir=build-fuzz
export CCACHE_BASEDIR=$PWD CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
if [ ! -f "$build_dir/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCT3_BUILD_FUZZERS=ON >/dev/null
fi
cmake --build "$build_dir" -j "${CT3_JOBS:-$(nproc)}" --target fuzz_server_api
mkdir -p "$build_dir/corpus"
cp -n tests/fuzz/corpus/* "$build_dir/corpus/" 2>/dev/null || true
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "fuzz: running fuzz_server_api for ${seconds}s" >&2
"$build_dir/tests/fuzz/fuzz_server_api" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -artifact_prefix="$build_dir/" "$@" "$build_dir/corpus"
