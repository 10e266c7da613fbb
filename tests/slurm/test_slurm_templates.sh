#!/usr/bin/env bash
# The batch templates of slurm/ on a real (one-node) Slurm: each template is submitted with
# sbatch, signalled mid-run with `scancel --signal=USR1 --batch`, must checkpoint, exit 75,
# requeue itself, resume and finish with exactly the losses of an uninterrupted run (same
# layout: bit-identical). The single-node template runs mpirun, the multi-node one
# srun --mpi=pmix. Starts the local Slurm (scripts/slurm_local.sh) unless it is already running,
# and stops it again only if this test started it.
#
#   tests/slurm/test_slurm_templates.sh PATH/TO/hourglass
# Exit 0 pass, 1 fail, 77 skipped (not root: cannot start Slurm here).
set -euo pipefail

HOURGLASS=$(realpath "$1")
SOURCE=$(cd "$(dirname "$0")/../.." && pwd)
# Enough steps that the run outlasts the poll for step 30 plus scancel's latency many times over:
# with 300, a fast machine (~1000 tiny steps/s) finished the job before USR1 reached it.
STEPS=${HG_SLURM_TEST_STEPS:-2000}

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: starting a local Slurm needs root"
  exit 77
fi

WORK=$(mktemp -d /tmp/hg-slurm-test-XXXXXX)
started=0
jobs_submitted=()
fail() {
  echo "FAIL: $*"
  for j in "${jobs_submitted[@]}"; do
    scontrol show job "$j" 2>/dev/null | grep -E "JobState|Restarts|ExitCode" || true
    [ -f "$WORK/hourglass-$j.out" ] && { echo "--- output of job $j"; grep -v " = " "$WORK/hourglass-$j.out" | tail -40; }
  done
  exit 1
}
cleanup() {
  for j in "${jobs_submitted[@]}"; do scancel "$j" 2>/dev/null || true; done
  [ "$started" -eq 1 ] && bash "$SOURCE/scripts/slurm_local.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! bash "$SOURCE/scripts/slurm_local.sh" status >/dev/null 2>&1; then
  bash "$SOURCE/scripts/slurm_local.sh" start || fail "could not start the local Slurm"
  started=1
fi
# shellcheck disable=SC1091
source "${HG_SLURM_DIR:-/tmp/hg-slurm}/env"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$HOURGLASS" prep --input "$SOURCE/data/corpus/common-licenses.txt" --output "$WORK/data" >/dev/null
MODEL=(--model.d_model 32 --model.heads 2 --model.ffn 64 --model.hierarchy "1@1 1@2 1@1"
       --model.window 8 --model.chunk 4 --model.dropout 0.1 --train.seq_len 32 --train.batch 4
       --train.micro_batch 2 --train.lr 0.003 --train.warmup 3 --train.steps "$STEPS"
       --log.every 100 --data.dir "$WORK/data" --parallel.pp 2 --checkpoint.every 50)

# "step loss" per step, the last line of a step winning (a resumed run repeats the steps after
# its checkpoint).
losses() { sed -n 's/.*"step": \([0-9]*\), "loss": \([^,]*\),.*/\1 \2/p' "$1" | awk '{l[$1]=$2} END {for (s in l) print s, l[s]}' | sort -n; }

echo "== uninterrupted run (mpirun -np 2, pp 2)"
mpirun -np 2 --bind-to none "$HOURGLASS" train "${MODEL[@]}" --run.dir "$WORK/reference" > "$WORK/reference.log" 2>&1 ||
  { tail -20 "$WORK/reference.log"; fail "the uninterrupted run failed"; }
losses "$WORK/reference/metrics.jsonl" > "$WORK/reference.losses"
[ "$(wc -l < "$WORK/reference.losses")" -eq "$STEPS" ] || fail "reference run has $(wc -l < "$WORK/reference.losses") steps"

# Submits `template` with `sbatch_args`, signals it after 30 steps, waits for the end.
run_template() {
  local template=$1; shift
  local job run t0 state
  job=$(cd "$WORK" && HOURGLASS=$HOURGLASS RUN_ROOT=$WORK/runs sbatch --parsable --time=10 "$@" \
          "$SOURCE/slurm/$template" "${MODEL[@]}") || fail "sbatch $template"
  jobs_submitted+=("$job")
  run=$WORK/runs/hourglass-$job
  echo "== $template: job $job"
  t0=$SECONDS
  until [ -f "$run/metrics.jsonl" ] && [ "$(wc -l < "$run/metrics.jsonl")" -ge 30 ]; do
    [ $((SECONDS - t0)) -lt 90 ] || { squeue; fail "job $job did not reach step 30 within 90 s"; }
    sleep 0.1
  done
  scancel --signal=USR1 --batch "$job"
  echo "   USR1 sent after $((SECONDS - t0)) s at step $(wc -l < "$run/metrics.jsonl")"
  until state=$(scontrol show job "$job" | grep -o 'JobState=[A-Z_]*'); \
        [ "$state" = JobState=COMPLETED ] || [ "$state" = JobState=FAILED ] || [ "$state" = JobState=CANCELLED ]; do
    [ $((SECONDS - t0)) -lt 150 ] || fail "job $job not finished within 150 s ($state)"
    sleep 0.5
  done
  echo "   $state after $((SECONDS - t0)) s"
  local info out
  info=$(scontrol show job "$job")
  out=$WORK/hourglass-$job.out
  [ "$state" = JobState=COMPLETED ] || fail "job $job ended in $state"
  grep -q "Restarts=1 " <<< "$info" || fail "job $job was not requeued exactly once: $(grep -o 'Restarts=[0-9]*' <<< "$info")"
  grep -q "ExitCode=0:0" <<< "$info" || fail "job $job exit code: $(grep -o 'ExitCode=[0-9:]*' <<< "$info")"
  grep -q "batch: received USR1, forwarding it to" "$out" || fail "the batch shell did not forward USR1"
  grep -q "stopped at step [0-9]* (signal or time limit); exit 75 to requeue" "$out" || fail "no stop with exit 75"
  grep -q "batch: trainer exited with status 75" "$out" || fail "the batch shell did not see exit 75"
  grep -q "restart 1 on" "$out" || fail "no restart of the batch script"
  grep -q "resumed from $run/checkpoints/step-" "$out" || fail "the requeued job did not resume"
  losses "$run/metrics.jsonl" > "$WORK/$job.losses"
  if ! diff -q "$WORK/reference.losses" "$WORK/$job.losses" >/dev/null; then
    diff "$WORK/reference.losses" "$WORK/$job.losses" | head -10
    fail "job $job's losses differ from the uninterrupted run's"
  fi
  echo "   final loss $(tail -1 "$WORK/$job.losses" | cut -d' ' -f2) = uninterrupted run's; every step equal"
}

run_template train_single_node.sbatch --ntasks=2
run_template train_multi_node.sbatch --nodes=1 --ntasks-per-node=2
echo "PASS"
