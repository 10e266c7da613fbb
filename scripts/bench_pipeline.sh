#!/usr/bin/env bash
# Pipeline benchmark (issues 4, 16): pp = 2 and pp = 3 ranks of one thread against one rank of one
# thread, the reference configuration, 8 micro-batches, every schedule (interleaved with 2 virtual
# stages per rank; at pp 3 it needs a multiple of 3 micro-batches, so it runs m 9 there), then one
# table of all of them side by side: measured and theoretical bubble, tokens/s, and the
# uncontended estimate (the schedule simulated with each op's measured CPU time), which is what
# a 2-core machine can say about pp 3. Prints the machine's load first: measured numbers are only
# meaningful on an otherwise idle machine.
#   scripts/bench_pipeline.sh [extra bench_pipeline options, e.g. --steps 6]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
cmake --build "$BUILD_DIR" -j2 --target bench_pipeline >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
table=$(mktemp)
trap 'rm -f "$table"' EXIT
for pp in 2 3; do
  for schedule in 1f1b gpipe "interleaved --virtual-stages 2" zbh1; do
    extra=""
    [ "$pp" = 3 ] && [[ "$schedule" == interleaved* ]] && extra="--micro-batches 9"
    echo "== mpirun -np $pp --oversubscribe --bind-to none bench_pipeline --schedule $schedule $extra $*"
    # shellcheck disable=SC2086  # the interleaved entry is two options
    out=$(mpirun -np "$pp" --oversubscribe --bind-to none "$BUILD_DIR/bench/bench_pipeline" \
          --schedule $schedule $extra "$@")
    echo "$out"
    bubble=$(echo "$out" | sed -n 's/^bubble: measured \([0-9.]*\), theory .* = \([0-9.]*\) (v.*/\1 \2/p')
    tokens=$(echo "$out" | sed -n "s/^pp $pp ($pp ranks): median [0-9.]* s\/step = *\([0-9]*\) tokens.*/\1/p")
    estimate=$(echo "$out" | sed -n 's/^uncontended estimate.*speed-up \([0-9.]*\)x, bubble \([0-9.]*\)$/\2 \1/p')
    echo "$pp ${schedule%% *} $bubble $tokens $estimate" >> "$table"
  done
done
echo
echo "pp schedule     bubble(measured) bubble(theory) tokens/s(measured) bubble(uncontended) speed-up(uncontended)"
while read -r pp schedule measured theory tokens est_bubble est_speedup; do
  printf '%-2s %-12s %16s %14s %18s %19s %21s\n' "$pp" "$schedule" "$measured" "$theory" "$tokens" \
    "$est_bubble" "${est_speedup}x"
done < "$table"
