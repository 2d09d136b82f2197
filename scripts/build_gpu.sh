#!/usr/bin/env bash
# Builds ct3 against PyTorch's libtorch (2.x, CUDA) on a machine without Debian's package registry.
#
# Here (Debian, with the registry), once:   scripts/build_gpu.sh --download   (fills ./.deb)
# There (GPU box, the .deb folder carried):  scripts/build_gpu.sh [build-dir]
# The .deb files of spdlog, fmt, nlohmann-json, CLI11, PCRE2 and GoogleTest are unpacked into
# /tmp/ct3-deps and used as a CMake/pkg-config prefix; libtorch comes from `python3 -c 'import torch'`.
# With faiss and cpp-httplib among them (Debian's faiss is a static library on OpenBLAS) the
# retrieval side (kb/, server/) is built too; its BLAS comes from the carried openblas-openmp folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--download" ]; then
  mkdir -p .deb && cd .deb
  apt-get download nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 \
    libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libgtest-dev googletest \
    libfaiss-dev libopenblas0-openmp libgfortran5 libcpp-httplib-dev libcpp-httplib0.11 libbrotli1 libbrotli-dev libssl-dev zlib1g-dev
  exit 0
fi
build_dir=${1:-build-gpu}
deps=/tmp/ct3-deps
mkdir -p "$deps"
for f in .deb/*.deb; do dpkg -x "$f" "$deps"; done
export PKG_CONFIG_SYSROOT_DIR=$deps
export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig
blas_dir=$deps/usr/lib/x86_64-linux-gnu/openblas-openmp
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:$blas_dir:${LD_LIBRARY_PATH:-}
export LIBRARY_PATH=$blas_dir:${LIBRARY_PATH:-}
retrieval=OFF
# faiss's CMake targets name the BLAS by Debian's alternatives path; point them at the carried copy.
faiss_targets=$deps/usr/lib/x86_64-linux-gnu/cmake/faiss/faiss-targets.cmake
[ -f "$faiss_targets" ] && sed -i "s|/usr/lib/x86_64-linux-gnu/libblas.so|$blas_dir/libblas.so.3|g; s|/usr/lib/x86_64-linux-gnu/liblapack.so|$blas_dir/liblapack.so.3|g" "$faiss_targets"
[ -f "$deps/usr/lib/x86_64-linux-gnu/libfaiss.a" ] && [ -f "$deps/usr/include/httplib.h" ] && retrieval=ON
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCT3_BUILD_RETRIEVAL=$retrieval \
      -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" ${CT3_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$(nproc)" ${CT3_TARGETS:+--target $CT3_TARGETS}
echo "build_gpu: built into $build_dir (retrieval $retrieval; run with LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:$blas_dir)" >&2
