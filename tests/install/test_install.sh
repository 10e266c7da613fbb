#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then the installed tree used as a user would, from
# a directory outside the source and build trees: `hourglass --help`, the installed quick start
# (prep of the installed corpus, a 3-stage pipeline for a few steps, eval, sample, plot), the
# scaling sweep finding the installed binary, and the Slurm templates pointing at it.
#
#   test_install.sh CMAKE BUILD_DIR WORK_DIR
set -euo pipefail
CMAKE=$1
BUILD=$(realpath "$2")
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK/home"
WORK=$(realpath "$WORK")
PREFIX=$WORK/prefix
fail() { echo "FAIL: $*"; exit 1; }

"$CMAKE" --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log" ||
  { cat "$WORK/install.log"; fail "cmake --install"; }
SHARE=$PREFIX/share/hourglass
for f in bin/hourglass share/hourglass/configs/quickstart.ini \
         share/hourglass/data/corpus/common-licenses.txt share/hourglass/scripts/quickstart.sh \
         share/hourglass/scripts/plot_metrics.py share/hourglass/scripts/scaling/sweep \
         share/hourglass/slurm/train_single_node.sbatch share/hourglass/slurm/train_multi_node.sbatch; do
  [ -e "$PREFIX/$f" ] || fail "$f is not installed"
done

# Nothing of the build or source tree on the way: no PATH entry, no HOURGLASS, another cwd.
cd "$WORK/home"
unset HOURGLASS
"$PREFIX/bin/hourglass" --help > help.txt || fail "hourglass --help exited $?"
grep -q "train" help.txt || fail "hourglass --help does not list train"

# The quick start as installed, 3 steps.
bash "$SHARE/scripts/quickstart.sh" --train.steps 3 --log.every 1 > quickstart.log 2>&1 ||
  { tail -n 40 quickstart.log; fail "the installed quickstart.sh"; }
ls runs/quickstart/checkpoints/step-00000003.h5 > /dev/null || fail "no checkpoint of step 3"
grep -q '"step": 3,' runs/quickstart/metrics.jsonl || fail "no metrics line of step 3"
grep -q "bpc" quickstart.log || fail "the quick start printed no bpc"

# The sweep's default binary is the installed one (--list preps the installed corpus with it).
/usr/bin/python3 "$SHARE/scripts/scaling/sweep" --grid tiny --list --out sweep > sweep.log 2>&1 ||
  { cat sweep.log; fail "the installed sweep did not find $PREFIX/bin/hourglass"; }

# sbatch runs a spooled copy of a template, so the installed ones name the binary themselves.
for t in "$SHARE"/slurm/*.sbatch; do
  grep -qF "HOURGLASS=\${HOURGLASS:-$PREFIX/bin/hourglass}" "$t" ||
    fail "$t does not default to $PREFIX/bin/hourglass"
  bash -n "$t" || fail "$t is not valid bash"
done
echo "install: $PREFIX works from $WORK/home"
