#!/usr/bin/env bash
# Packs, here, what scripts/device_check.sh runs on a bare CUDA machine (the `device` tool's: one
# H100/H200, CUDA 13 and cmake, but no Open MPI, HDF5, Boost or oneDNN and no package registry):
# the operation tests (tests/test_layers: every op on /cpu and /cuda) and bench_cuda_gemm, built
# here for sm_80 and sm_90 by CUDA 13.0, with the shared libraries they load that such a machine
# lacks (oneDNN, OpenCL's loader, libgomp, the CUDA runtime they were linked against). cuBLAS comes
# from the machine's own CUDA 13 (its cublasLt is 500 MB); glibc, libstdc++ and libgcc_s from its
# system, which is newer than this one. Writes .device/bundle.tar.gz (git-ignored; about 15 MB)
# for the device tool to carry:
#   run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh test_layers bench_cuda_gemm
BUILD=${BUILD_DIR:-build}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" .device
cp "$BUILD/tests/test_layers" "$BUILD/bench/bench_cuda_gemm" "$STAGE/bin/"
# The libraries a bare machine lacks: every resolved dependency but the system's own (glibc,
# the C++ runtime) and cuBLAS.
skip='/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcublas|libcublasLt)\.so|ld-linux'
for binary in "$STAGE"/bin/*; do
  ldd "$binary" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -Ev "$skip" | while read -r lib; do
  cp -L "$lib" "$STAGE/lib/"
done
ls "$STAGE/lib" > "$STAGE/lib.list"
tar -C "$STAGE" -czf .device/bundle.tar.gz bin lib lib.list
echo "device_bundle: .device/bundle.tar.gz ($(du -h .device/bundle.tar.gz | cut -f1)):" \
  "$(ls "$STAGE/bin" | tr '\n' ' ')+ $(wc -l < "$STAGE/lib.list") libraries: $(tr '\n' ' ' < "$STAGE/lib.list")"
