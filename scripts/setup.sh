#!/usr/bin/env bash
# Installs ct3's Debian dependencies (when missing) and builds it (Release) into ./build.
#   scripts/setup.sh            install + configure + build
#   CT3_BUILD_DIR=dir CT3_CMAKE_ARGS="-DCT3_SANITIZE=address,undefined" scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config ccache
          libtorch-dev libfaiss-dev libcpp-httplib-dev nlohmann-json3-dev libsentencepiece-dev
          libcli11-dev libspdlog-dev libgtest-dev libpcre2-dev
          libgloo-dev  # c10d's Gloo headers: data-parallel pretraining on CPU (ct3-pretrain --nproc)
          libopenblas0-openmp)  # optimised BLAS for FAISS and libtorch, OpenMP-threaded like them
# Test-only tools come from scripts/test.sh through CT3_EXTRA_PACKAGES.
read -r -a extra <<< "${CT3_EXTRA_PACKAGES:-}"
packages+=("${extra[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=${CT3_BUILD_DIR:-build}
# Paths relative to the checkout and PCH-tolerant hashing let ccache share objects between build
# folders (Release and the sanitizer builds of scripts/sanitize.sh).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" ${CT3_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "${CT3_JOBS:-$(nproc)}"
echo "setup: built into $build_dir" >&2
