#!/usr/bin/env bash
# Configures and builds hourglass. BUILD_TYPE=Release|Debug|Asan, BUILD_DIR=build by default;
# arguments name targets (default: everything), e.g. `scripts/build.sh hourglass`. CMAKE_ARGS adds
# configuration options, e.g. CMAKE_ARGS=-DHG_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TYPE=${BUILD_TYPE:-Release}
BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-} > "$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log"; exit 1; }
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "$(nproc)" "${targets[@]}"
