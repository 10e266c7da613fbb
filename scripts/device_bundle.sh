#!/usr/bin/env bash
# Packs, here, what scripts/device_check.sh runs on a bare CUDA machine (the `device` tool's: one
# H100/H200, CUDA 13 and cmake, but no Open MPI, HDF5, Boost or oneDNN and no package registry):
# the operation tests (tests/test_layers: every op on /cpu and /cuda), bench_cuda_gemm and the
# trainer (hourglass), built here for sm_80 and sm_90 by CUDA 13.0, with the shared libraries they
# load that such a machine lacks (oneDNN, HDF5, Boost, protobuf, OpenCL's loader, libgomp, the CUDA
# runtime they were linked against), and a relocated Open MPI 4.1 runtime (Debian 12's: mpirun,
# orted, its libraries and PMIx, the plugins a single node needs, its help text) so that both
# `hourglass train` as a singleton and `mpirun -np N hourglass train` work from the unpacked
# folder. cuBLAS comes from the machine's own CUDA 13 (its cublasLt is 500 MB); glibc, libstdc++
# and libgcc_s from its system, which is newer than this one. Writes .device/bundle.tar.gz
# (git-ignored; about 26 MB) for the device tool to carry:
#   run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=540)
# Unpacked at $B, `source $B/env.sh` (bash) sets PATH, LD_LIBRARY_PATH and Open MPI's relocation.
# HG_BUNDLE_NO_BUILD=1 skips the build and packs what $BUILD_DIR already holds (when another build
# in the same tree must not be disturbed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HG_BUNDLE_NO_BUILD:-0}" != 1 ]; then
  bash scripts/build.sh test_layers test_parallel bench_cuda_gemm hourglass
fi
BUILD=${BUILD_DIR:-build}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib/openmpi" "$STAGE/lib/pmix" "$STAGE/share/openmpi" \
  "$STAGE/share/pmix" "$STAGE/etc" .device
cp "$BUILD/tests/test_layers" "$BUILD/tests/test_parallel" "$BUILD/bench/bench_cuda_gemm" \
  "$BUILD/hourglass" "$STAGE/bin/"

# Open MPI, as Debian 12 installs it (configured for prefix /usr; the plugins in pkglibdir, PMIx 4
# beside it with its own prefix). mpirun is orterun; orted is what a singleton MPI_Init forks.
ompi_libdir=$(dirname "$(readlink -f "$(ldd "$BUILD/hourglass" | awk '$1 == "libmpi.so.40" {print $3}')")")
ompi_plugins=${OMPI_PLUGIN_DIR:-$ompi_libdir/openmpi/lib/openmpi3}
pmix_plugins=${PMIX_PLUGIN_DIR:-$ompi_libdir/pmix2/lib/pmix}
if [ ! -d "$ompi_plugins" ] || [ ! -d "$pmix_plugins" ]; then
  echo "device_bundle: no Open MPI plugins at $ompi_plugins or no PMIx plugins at $pmix_plugins"; exit 1
fi
cp -L "$(command -v orterun)" "$STAGE/bin/mpirun"
cp -L "$(command -v orted)" "$STAGE/bin/orted"
# The plugins whose libraries are only Open MPI's own, PMIx's and the system's: the network stacks
# a single node does not use (UCX, libfabric, PSM, verbs, netlink) and OpenSHMEM are left out.
ompi_deps='/(libopen-pal|libopen-rte|libmpi|libhwloc|libevent_core|libevent_pthreads|libudev|libz|libpmix|libmunge|libmca_common_sm|libmca_common_monitoring|libmca_common_ompio)[-.0-9]*\.so'
skipped_plugins=()
for plugin in "$ompi_plugins"/mca_*.so; do
  if ldd "$plugin" | awk '$3 ~ /^\// {print $3}' | grep -Ev "$ompi_deps" \
      | grep -Evq '/(libc|libm|libdl|libpthread|librt)\.so'; then
    skipped_plugins+=("$(basename "$plugin" .so)")
  else
    cp "$plugin" "$STAGE/lib/openmpi/"
  fi
done
cp "$pmix_plugins"/pmix_mca_*.so "$STAGE/lib/pmix/"
# Help text: what Open MPI and PMIx print when something fails (without it, only "help file not
# found"). Debian's system-wide MCA defaults (no openib/UCX/libfabric, no osc pt2pt) go along.
cp /usr/share/openmpi/help-*.txt "$STAGE/share/openmpi/"
cp "$pmix_plugins"/../../share/pmix/help-*.txt "$STAGE/share/pmix/"
cp /etc/openmpi/openmpi-mca-params.conf "$STAGE/etc/"

# The libraries a bare machine lacks: every resolved dependency but the system's own (glibc, all
# of whose parts, libresolv included, are tied to the libc they came with; the C++ runtime) and
# cuBLAS.
skip='/(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec|libstdc\+\+|libgcc_s|libcublas|libcublasLt)\.so|ld-linux'
for binary in "$STAGE"/bin/* "$STAGE"/lib/openmpi/*.so "$STAGE"/lib/pmix/*.so; do
  ldd "$binary" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -Ev "$skip" | while read -r lib; do
  cp -L "$lib" "$STAGE/lib/"
done

cat > "$STAGE/env.sh" <<'EOF'
# Sourced (bash) after unpacking .device/bundle.tar.gz: the bundle's binaries, libraries and its
# relocated Open MPI 4.1 (Debian 12's, configured for prefix /usr) from wherever it was unpacked.
# (Only bash builtins here: the folder of this file, absolute.)
hg_dir=${BASH_SOURCE[0]%/*}; [ "$hg_dir" != "${BASH_SOURCE[0]}" ] || hg_dir=.
HG_BUNDLE=$(cd "$hg_dir" && pwd); unset hg_dir
export HG_BUNDLE
export PATH="$HG_BUNDLE/bin:$PATH"
export LD_LIBRARY_PATH="$HG_BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Open MPI rewrites every install path under its configured prefix (/usr) to this one: bindir
# (orted, which a singleton MPI_Init forks), libdir, help text.
export OPAL_PREFIX="$HG_BUNDLE"
# The plugins lie flat in lib/openmpi, not under Debian's lib/x86_64-linux-gnu/openmpi/lib/openmpi3.
export OPAL_PKGLIBDIR="$HG_BUNDLE/lib/openmpi"
# Help text in share/openmpi, not under the relocated Debian path.
export OPAL_PKGDATADIR="$HG_BUNDLE/share/openmpi"
# sysconfdir (/etc/openmpi) is not under /usr, so it is not relocated: read the bundled copy of
# Debian's openmpi-mca-params.conf, not whatever the machine's /etc may hold.
export OPAL_SYSCONFDIR="$HG_BUNDLE/etc"
# PMIx has its own prefix (/usr/lib/x86_64-linux-gnu/pmix2) that OPAL_PREFIX does not move: its
# plugins and help text are in lib/pmix and share/pmix here, and its sysconfdir is ours (Debian's
# pmix-mca-params.conf would point the plugin path back at /usr/lib/x86_64-linux-gnu/pmix2).
export PMIX_PKGLIBDIR="$HG_BUNDLE/lib/pmix"
export PMIX_PKGDATADIR="$HG_BUNDLE/share/pmix"
export PMIX_SYSCONFDIR="$HG_BUNDLE/etc"
# hwloc's plugins (PCI, OpenCL, GL) are not bundled: keep it from loading another hwloc's.
export HWLOC_PLUGINS_PATH="$HG_BUNDLE/lib/hwloc"
# All ranks on this one machine: mpirun launches them itself (no ssh/rsh there to look for).
export OMPI_MCA_plm=isolated
# Shared memory and self only, through ob1: the only transports bundled.
export OMPI_MCA_pml=ob1
export OMPI_MCA_btl=self,vader
# Containers often forbid process_vm_readv (CMA), which vader then aborts on; copy through the
# shared segment instead.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# The device machine runs commands as root, which mpirun refuses without both of these.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
EOF

find "$STAGE/lib" -maxdepth 1 -type f -printf '%f\n' | sort > "$STAGE/lib.list"
tar -C "$STAGE" -czf .device/bundle.tar.gz bin lib share etc env.sh lib.list
echo "device_bundle: .device/bundle.tar.gz ($(du -h .device/bundle.tar.gz | cut -f1)):" \
  "$(ls "$STAGE/bin" | tr '\n' ' ')+ $(wc -l < "$STAGE/lib.list") libraries: $(tr '\n' ' ' < "$STAGE/lib.list")"
echo "device_bundle: $(find "$STAGE/lib/openmpi" -name '*.so' | wc -l) Open MPI plugins," \
  "$(find "$STAGE/lib/pmix" -name '*.so' | wc -l) PMIx plugins;" \
  "left out (libraries not bundled): ${skipped_plugins[*]:-none}"
