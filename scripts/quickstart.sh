#!/usr/bin/env bash
# The main job on bundled data: install what is missing, build, prepare the bundled corpus, train
# a small Hourglass model as a 3-stage pipeline under mpirun (loss falling, bpc), evaluate it,
# sample from it and plot the loss curve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh hourglass
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
HG=build/hourglass
RUN=runs/quickstart
rm -rf "$RUN"
mkdir -p "$RUN"
$HG prep --input data/corpus/common-licenses.txt --output "$RUN/data"
$HG info "$RUN/data"
# 3 ranks = 3 pipeline stages: full-resolution pre stack, shortened middle, post stack.
mpirun -np 3 --bind-to none $HG train --config configs/quickstart.ini --data.dir "$RUN/data" \
  --run.dir "$RUN" --log.trace "$RUN/trace.json"
CKPT=$(ls "$RUN"/checkpoints/step-*.h5 | tail -n 1)
$HG eval --checkpoint "$CKPT" --data "$RUN/data" --split valid
$HG eval --checkpoint "$CKPT" --data "$RUN/data" --split valid --ffn-widths 256
$HG sample --checkpoint "$CKPT" --prompt "This License " --length 240 --temperature 0.6 --seed 3
/usr/bin/python3 scripts/plot_metrics.py "$RUN/metrics.jsonl" "$RUN/loss.png" || true
echo "quickstart: metrics $RUN/metrics.jsonl, loss curve $RUN/loss.png, pipeline trace $RUN/trace.json (open in ui.perfetto.dev)"
