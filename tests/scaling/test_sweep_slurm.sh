#!/usr/bin/env bash
# The sweep's srun path (docs/scaling.md): the tiny grid inside an allocation of the local
# one-node Slurm (scripts/slurm_local.sh), where scripts/scaling/sweep starts every point with
# `srun --mpi=pmix`; the same checks as scaling.sweep_tiny, plus: every point's command was srun.
# Starts the local Slurm unless it is already running and stops it again only if it started it.
#
#   tests/scaling/test_sweep_slurm.sh PATH/TO/hourglass OUT_DIR
# Exit 0 pass, 1 fail, 77 skipped (not root: cannot start Slurm here).
set -euo pipefail

HOURGLASS=$(realpath "$1")
OUT=$2
SOURCE=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: starting a local Slurm needs root"
  exit 77
fi
started=0
cleanup() {
  [ "$started" -eq 1 ] && bash "$SOURCE/scripts/slurm_local.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
if ! bash "$SOURCE/scripts/slurm_local.sh" status >/dev/null 2>&1; then
  bash "$SOURCE/scripts/slurm_local.sh" start || { echo "FAIL: could not start the local Slurm"; exit 1; }
  started=1
fi
# shellcheck disable=SC1091
source "${HG_SLURM_DIR:-/tmp/hg-slurm}/env"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

# Two tasks: the tiny grid's largest points have 2 ranks.
salloc --ntasks 2 --time 10 /usr/bin/python3 "$SOURCE/tests/scaling/test_scaling.py" sweep \
  --hourglass "$HOURGLASS" --out "$OUT" || { echo "FAIL: the sweep inside salloc"; exit 1; }
launched=$(head -qn1 "$OUT"/runs/*/train.log | cut -d' ' -f1 | sort | uniq -c)
echo "launchers: $launched"
if head -qn1 "$OUT"/runs/*/train.log | grep -qv '^srun --mpi=pmix '; then
  echo "FAIL: a point was not started with srun inside the allocation"
  exit 1
fi
echo "PASS"
