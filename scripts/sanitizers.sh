#!/usr/bin/env bash
# The AddressSanitizer + UBSan (+ LeakSanitizer) build and the tests CI runs under it: every
# serial test of the suite and a few MPI layouts (the subset below), printing how many ran and
# how long the build and the tests took. BUILD_TYPE=Asan (CMakeLists.txt; options compiled into
# every executable by tests/sanitizers/asan_build.cpp), in build-asan (ASAN_BUILD_DIR), with the
# CUDA backend built for the CPU emulation (HG_CUDA_EMULATION=ON: its sources compiled by g++, so
# instrumented; docs/cuda.md): the /cuda operation tests and `train --run.device cuda` run here on
# the emulated device, which is not a GPU. Arguments replace the ctest selection, e.g.
# `scripts/sanitizers.sh -R Config`.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
BUILD=${ASAN_BUILD_DIR:-build-asan}
started=$(date +%s)
BUILD_TYPE=Asan BUILD_DIR=$BUILD CMAKE_ARGS="-DHG_CUDA_EMULATION=ON" bash scripts/build.sh \
  hourglass test_core test_layers test_data test_parallel test_model test_checkpoint test_trainer \
  test_plan test_cuda_emulation
built=$(date +%s)
echo "sanitizers: Asan build in $(( built - started )) s"

# Serial: every test of the GoogleTest binaries (each alone; those that start hourglass under
# mpirun themselves included), less the slowest few, which under ASan cost minutes each and
# cover no code the others miss: the bf16 training runs (300 and 2x20 steps of the quick-start
# model; bf16 products are covered by core.Bf16Gemm* and model.Bf16Model*), the bf16 reference
# sweep, the random-time stop loop, and the checkpoint layout and killed-rank runs that repeat
# the smaller ones with more ranks.
# On the emulated device, the finite-difference checks of attention and the resampling MHA (tens
# of seconds to minutes each without ASan: every emulated thread is a fiber) and the 8192-token
# run are left out; every other /cuda operation test, the emulation's own tests and the trainer
# on the emulated device (trainer.CudaTraining*) run. tests/cuda (cuBLAS, NCCL) needs nvcc: not
# built here, so neither is its _NOT_BUILT placeholder run.
# MPI: one layout per distributed room: the communicators and pipeline on 2 and 4 ranks, the
# data reader on 3, the trainer's pipeline layouts on 2, tensor parallelism on 8, the
# tensor-parallel save on 2.
slow='Bf16Training[.]|Bf16Gemm[.]MatchesRoundedReference|StopSignals[.]SingleRankRunsStopCleanlyAtRandomTimes'
slow+='|StopSignals[.]TermToOneRankOfTwo|AKilledRankEndsTheJob|SavedOnDp2Pp2(Tp2)?ResumesOnOtherLayouts'
slow+='|(Attention|Mha)[.][A-Za-z]*FiniteDifferences/cuda$|LongShortTrainsAtLength8192/cuda$'
mpi='^(parallel[.]mpi[24]|data[.]mpi3|trainer[.]mpi2|model[.]mpi8|checkpoint[.]mpi2)[.]'
status=0
run_tests() { (cd "$BUILD" && ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@") || status=1; }
if [ $# -gt 0 ]; then
  run_tests "$@"
else
  run_tests -LE 'scaling|slurm|install' -E "mpi[0-9]|_NOT_BUILT|$slow"
  run_tests -R "$mpi"
fi
echo "sanitizers: build $(( built - started )) s, tests $(( $(date +%s) - built )) s"
exit $status
