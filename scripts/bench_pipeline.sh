#!/usr/bin/env bash
# Pipeline benchmark (issue 4): pp = 2 on two ranks of one thread against one rank of one thread,
# 8 micro-batches, every schedule (interleaved with 2 virtual stages per rank). Prints the machine's load first: the numbers are only
# meaningful on an otherwise idle machine (2 cores, both used by the pp = 2 run).
#   scripts/bench_pipeline.sh [extra bench_pipeline options, e.g. --stages 8,7 --steps 6]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
cmake --build "$BUILD_DIR" -j2 --target bench_pipeline >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for schedule in 1f1b gpipe "interleaved --virtual-stages 2" zbh1; do
  echo "== mpirun -np 2 --bind-to core bench_pipeline --schedule $schedule $*"
  # shellcheck disable=SC2086  # the interleaved entry is two options
  mpirun -np 2 --bind-to core "$BUILD_DIR/bench/bench_pipeline" --schedule $schedule "$@"
done
