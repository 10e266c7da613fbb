#!/usr/bin/env bash
# The main job on bundled data: install what is missing, build, prepare the bundled corpus, train
# a small Hourglass model as a 3-stage pipeline under mpirun (loss falling, bpc), evaluate it,
# sample from it and plot the loss curve. Arguments are extra `hourglass train` flags
# (e.g. --train.steps 50).
#
# From an installed tree (<prefix>/share/hourglass/scripts after `cmake --install`) it runs
# <prefix>/bin/hourglass and writes runs/quickstart under the current directory; from the source
# tree it installs packages and builds first. $HOURGLASS overrides the binary in both
# (scripts/scaling/hourglass_binary.py follows the same rule).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)  # the source tree, or <prefix>/share/hourglass
if [ -f "$ROOT/CMakeLists.txt" ]; then
  cd "$ROOT"
  bash scripts/setup.sh
  [ -n "${HOURGLASS:-}" ] || bash scripts/build.sh hourglass
  HG=${HOURGLASS:-$ROOT/build/hourglass}
else
  HG=${HOURGLASS:-$(cd "$ROOT/../.." && pwd)/bin/hourglass}
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
RUN=runs/quickstart
rm -rf "$RUN"
mkdir -p "$RUN"
"$HG" prep --input "$ROOT/data/corpus/common-licenses.txt" --output "$RUN/data"
"$HG" info "$RUN/data"
# 3 ranks = 3 pipeline stages: full-resolution pre stack, shortened middle, post stack.
mpirun -np 3 --bind-to none "$HG" train --config "$ROOT/configs/quickstart.ini" --data.dir "$RUN/data" \
  --run.dir "$RUN" --log.trace "$RUN/trace.json" "$@"
CKPT=$(ls "$RUN"/checkpoints/step-*.h5 | tail -n 1)
"$HG" eval --checkpoint "$CKPT" --data "$RUN/data" --split valid
"$HG" eval --checkpoint "$CKPT" --data "$RUN/data" --split valid --ffn-widths 256
"$HG" sample --checkpoint "$CKPT" --prompt "This License " --length 240 --temperature 0.6 --seed 3
/usr/bin/python3 "$ROOT/scripts/plot_metrics.py" "$RUN/metrics.jsonl" "$RUN/loss.png" || true
echo "quickstart: metrics $RUN/metrics.jsonl, loss curve $RUN/loss.png, pipeline trace $RUN/trace.json (open in ui.perfetto.dev)"
