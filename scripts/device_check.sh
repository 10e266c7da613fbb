#!/usr/bin/env bash
# The device check of issue 15, on a machine with a GPU (the `device` tool; run from the repo
# root after scripts/device_bundle.sh here, with carry=[".device"]). Under 8 minutes:
#   1. what the machine is (nvidia-smi) and whether every library of the bundle resolves;
#   2. the operation suite on the device: every op of tests/test_layers on /cuda, each against
#      the same expectations as on /cpu (gradients, finite differences, the CPU layer's results);
#      then NCCL on one rank (tests/test_parallel's CommOnDeviceNccl.OneRank*);
#   3. the GPU's own matrix-product ceilings, fp32 and bf16 (bench_cuda_gemm), on a square product
#      and on the reference and wider configurations' shapes;
#   4. training on the GPU (the bundle's hourglass and Open MPI): the reference configuration
#      (configs/reference.ini) 50 steps on cuda against the same 50 steps on the CPU, each step's
#      loss compared; pp 2 with two ranks sharing the GPU against one rank; tokens/s and MFU
#      against the bf16 peak of step 3, for the reference and a wider model (d 1024, 16 heads,
#      ffn 4096); sampling from the GPU run's checkpoint on the GPU, with cached decoding and with
#      --no-cache, against the CPU's text; then bf16 with the native attention against cuDNN's
#      (run.attention_backend cudnn): tokens/s and the losses, reference and wide models.
# Output: the console, and $OUT/device_check.log with the gtest XML and the runs' metrics beside it.
#
# A dry run of step 4's logic without a GPU (the emulated device of an HG_CUDA_EMULATION build,
# the tests' tiny model, a few steps; about 4 minutes here, run by hand before a GPU session):
#   DEVICE_CHECK_TRAINING_ONLY=1 DEVICE_CHECK_HOURGLASS=build-emu/hourglass \
#   DEVICE_CHECK_MPIRUN=mpirun DEVICE_CHECK_TINY=1 bash scripts/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/hg-device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
BUNDLE=/tmp/hg-bundle
status=0
if [ -z "${DEVICE_CHECK_TRAINING_ONLY:-}" ]; then
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
tar -C "$BUNDLE" -xzf .device/bundle.tar.gz || { echo "device_check: no .device/bundle.tar.gz (run scripts/device_bundle.sh here and carry .device)"; exit 2; }
# cuBLAS from the machine's CUDA 13 (the toolkit's lib64, else wherever libcublasLt.so.13 is).
CUBLAS_DIR=
for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$dir/libcublasLt.so.13" ] && { CUBLAS_DIR=$dir; break; }
done
[ -n "$CUBLAS_DIR" ] || CUBLAS_DIR=$(dirname "$(timeout 60 find / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -n 1)" 2>/dev/null)
# NCCL (loaded by dlopen): CUDA's own, else the one PyTorch's nvidia-nccl-cu13 brings.
NCCL_DIR=
for dir in "$CUBLAS_DIR" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -n "$dir" ] && [ -e "$dir/libnccl.so.2" ] && { NCCL_DIR=$dir; break; }
done
[ -n "$NCCL_DIR" ] || NCCL_DIR=$(dirname "$(timeout 60 find / -xdev -name 'libnccl.so.2*' 2>/dev/null | head -n 1)" 2>/dev/null)
# cuDNN 9 (opened by dlopen for run.attention_backend cudnn): CUDA's own, else pip's nvidia-cudnn-cu13.
CUDNN_DIR=
for dir in "$CUBLAS_DIR" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -n "$dir" ] && [ -e "$dir/libcudnn.so.9" ] && { CUDNN_DIR=$dir; break; }
done
[ -n "$CUDNN_DIR" ] || CUDNN_DIR=$(dirname "$(timeout 60 find / -xdev -name 'libcudnn.so.9*' 2>/dev/null | head -n 1)" 2>/dev/null)
export LD_LIBRARY_PATH="$BUNDLE/lib:${CUBLAS_DIR}:${NCCL_DIR}:${CUDNN_DIR}:${LD_LIBRARY_PATH:-}"
echo "== 1. machine"
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "nvidia-smi failed"
echo "cuBLAS from: ${CUBLAS_DIR:-not found}; NCCL from: ${NCCL_DIR:-not found}; cuDNN from: ${CUDNN_DIR:-not found}"
missing=0
for binary in "$BUNDLE"/bin/*; do
  if ldd "$binary" | grep "not found"; then missing=1; fi
done
[ "$missing" = 0 ] && echo "every library of the bundle resolves"

echo "== 2. operation suite on the device (tests/test_layers, /cuda instances)"
OMP_NUM_THREADS=8 timeout 360 "$BUNDLE/bin/test_layers" --gtest_filter='*/cuda' \
  --gtest_output="xml:$OUT/test_layers_cuda.xml" > "$OUT/test_layers_cuda.txt" 2>&1 || status=$?
# gtest's summary: the counts, and each failed test once (the lines without a duration).
grep -E '^\[==========\] [0-9]+ tests? from|^\[  PASSED  \]|^\[  SKIPPED \] [0-9]+ test|^\[  FAILED  \]' \
  "$OUT/test_layers_cuda.txt" | grep -v ' ms)$' | head -60
grep -A12 'Failure' "$OUT/test_layers_cuda.txt" | head -80
echo "test_layers /cuda exit status: $status (124 = timed out)"

echo "== 2b. NCCL on one rank (tests/test_parallel: a single GPU cannot hold two NCCL ranks)"
# A singleton MPI process: the communicator's stream, events, grouped reduce and broadcast, wait.
(source "$BUNDLE/env.sh" && timeout 120 "$BUNDLE/bin/test_parallel" \
  --gtest_filter='CommOnDeviceNccl.OneRank*' > "$OUT/test_parallel_nccl.txt" 2>&1)
echo "test_parallel NCCL exit status: $?"
grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|Failure' -A6 "$OUT/test_parallel_nccl.txt" | head -30

echo "== 3. matrix-product ceilings (cuBLAS, bench_cuda_gemm)"
timeout 120 "$BUNDLE/bin/bench_cuda_gemm" | tee "$OUT/bench_cuda_gemm.txt" || echo "bench_cuda_gemm exit status: $?"
# The bf16 column of the square product: the peak MFU is measured against.
peak_tf=$(awk '/^ *8192 x  8192 x  8192/ {print $(NF-1)}' "$OUT/bench_cuda_gemm.txt")

fi  # DEVICE_CHECK_TRAINING_ONLY

echo "== 4. training on the GPU (hourglass train --run.device cuda)"
HG=${DEVICE_CHECK_HOURGLASS:-$BUNDLE/bin/hourglass}
MPIRUN=${DEVICE_CHECK_MPIRUN:-$BUNDLE/bin/mpirun}
if [ ! -x "$HG" ]; then
  echo "no hourglass at $HG: rebuild the bundle with scripts/device_bundle.sh"; exit "$status"
fi
[ -z "${DEVICE_CHECK_HOURGLASS:-}" ] && [ -f "$BUNDLE/env.sh" ] && . "$BUNDLE/env.sh"  # Open MPI's relocated prefix
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The model: configs/reference.ini (6144 tokens a step), or for a dry run the tests' tiny model.
MODEL=(--config configs/reference.ini)
STEPS=50 SHORT=20 TOKENS=6144 MICRO_BATCHES=4 CPU_THREADS=16 GPU_THREADS=4
WIDE=("${MODEL[@]}" --model.d_model 1024 --model.heads 16 --model.ffn 4096)
if [ -n "${DEVICE_CHECK_TINY:-}" ]; then
  MODEL=(--model.d_model 32 --model.heads 2 --model.ffn 64 --model.window 8 --model.chunk 4
         --model.hierarchy "1@1 1@2 1@1" --train.seq_len 32 --train.batch 4 --train.micro_batch 2
         --train.lr 0.003 --train.warmup 3)
  STEPS=8 SHORT=6 TOKENS=128 MICRO_BATCHES=2 CPU_THREADS=1 GPU_THREADS=1
  WIDE=("${MODEL[@]:6}" --model.d_model 64 --model.heads 4 --model.ffn 128)
fi
RUNS=/tmp/hg-device-runs
rm -rf "$RUNS" && mkdir -p "$RUNS"
timeout 60 "$HG" prep --input data/corpus/common-licenses.txt --output "$RUNS/data" > /dev/null ||
  echo "prep failed"
train() {  # train NAME RANKS ARGS...: one run, its log in $RUNS and its metrics in $OUT
  local name=$1 ranks=$2; shift 2
  local launcher=()
  [ "$ranks" -gt 1 ] && launcher=("$MPIRUN" -np "$ranks" --oversubscribe --bind-to none)
  local t0
  t0=$(date +%s)
  timeout 150 "${launcher[@]}" "$HG" train "${MODEL[@]}" --data.dir "$RUNS/data" \
    --run.dir "$RUNS/$name" --log.every 10 "$@" > "$RUNS/$name.log" 2>&1
  local rc=$?
  rm -f "$OUT/$name.metrics.jsonl"  # no stale metrics from an earlier check in the same $OUT
  cp "$RUNS/$name/metrics.jsonl" "$OUT/$name.metrics.jsonl" 2>/dev/null
  echo "$name: exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc = 0 ] || tail -n 15 "$RUNS/$name.log"
  return $rc
}
losses() { grep -o '"step": [0-9]*, "loss": [0-9.e+-]*' "$OUT/$1.metrics.jsonl" | tr -d , | awk '{print $2, $4}'; }
# 4a. STEPS on the GPU against STEPS on the CPU. Each op is within ~1e-6 relative of the CPU (the
# op suite above), products summed in cuBLAS's order; 50 steps of AdamW carry that into the
# weights, so the losses drift apart slowly: 1e-3 relative is far above float32 drift yet far
# below what a wrong kernel, mask or lost gradient does (losses move by ~0.02 nats a step here).
train gpu 1 --run.device cuda --run.threads "$GPU_THREADS" --train.steps "$STEPS" &&
  train cpu 1 --run.device cpu --run.threads "$CPU_THREADS" --train.steps "$STEPS"
join <(losses gpu) <(losses cpu) | awk -v steps="$STEPS" '{d = $2 - $3; if (d < 0) d = -d; r = d / $3;
  if (r >= worst) {worst = r; at = $1}} END {printf "gpu vs cpu, %d steps: worst relative loss difference %.3g at step %s: %s (tolerance 1e-3)\n", NR, worst, at, (NR == steps && worst <= 1e-3) ? "PASS" : "FAIL"}'
# 4b. pp 2: two ranks sharing the GPU (pipeline messages staged through host memory) against one;
# the same kernels on the same rows, so the same losses.
train gpu_pp1 1 --run.device cuda --train.steps "$SHORT" &&
  train gpu_pp2 2 --run.device cuda --train.steps "$SHORT" --parallel.pp 2
join <(losses gpu_pp2) <(losses gpu_pp1) | awk -v steps="$SHORT" '{d = $2 - $3; if (d < 0) d = -d; if (d > worst) worst = d; same += ($2 == $3)}
  END {printf "pp 2 sharing the GPU vs one rank, %d steps: %d identical, worst difference %.3g: %s\n", NR, same, worst, (NR == steps && worst <= 1e-5) ? "PASS" : "FAIL"}'
# 4c. Sampling from 4a's checkpoint on the GPU: cached decoding (the default; its caches in device
# memory) against --no-cache on the GPU and against the CPU. The same seed draws the same tokens
# from logits equal up to rounding unless a draw lands within ~1e-6 of a boundary between two
# tokens (rare; greedy decoding of a briefly trained model only repeats one letter); a mismatch
# prints both texts to read rather than a bare FAIL. Two samples decoded as a batch, past seq_len
# in the tiny dry run (the window restart).
sample() {  # sample NAME ARGS...: the text in $RUNS/NAME.txt
  local name=$1; shift
  timeout 120 "$HG" sample --checkpoint "$ckpt" --prompt "This License" --length "$SAMPLE_TOKENS" \
    --temperature 0.8 --seed 7 --num-samples 2 "$@" > "$RUNS/$name.txt" 2> "$RUNS/$name.err"
  local rc=$?
  echo "$name: exit $rc"
  [ $rc = 0 ] || tail -n 5 "$RUNS/$name.err"
}
same_text() {  # same_text A B
  if cmp -s "$RUNS/$1.txt" "$RUNS/$2.txt"; then echo "$1 vs $2: identical text: PASS"
  else echo "$1 vs $2: texts differ: FAIL"; head -c 600 "$RUNS/$1.txt"; echo; head -c 600 "$RUNS/$2.txt"; echo; fi
}
SAMPLE_TOKENS=$([ -n "${DEVICE_CHECK_TINY:-}" ] && echo 48 || echo 160)
ckpt=$(ls "$RUNS"/gpu/checkpoints/step-*.h5 2>/dev/null | tail -n 1)
if [ -n "$ckpt" ]; then
  sample sample_gpu --device cuda
  sample sample_gpu_nocache --device cuda --no-cache
  sample sample_cpu --device cpu
  same_text sample_gpu sample_gpu_nocache
  same_text sample_gpu sample_cpu
else
  echo "sampling: no checkpoint from 4a"
fi
# 4d. Throughput: seconds per step after the first five, FLOP per step from the layout table
# (forward + backward per micro-batch, times the micro-batches), MFU against step 3's bf16 peak.
throughput() {  # throughput NAME
  local flop_mb
  flop_mb=$(awk '$1 == "total" {v = $3; u = $4; m = 1; if (u ~ /^k/) m = 1e3; if (u ~ /^M/) m = 1e6;
    if (u ~ /^G/) m = 1e9; if (u ~ /^T/) m = 1e12; if (u ~ /^P/) m = 1e15; print v * m; exit}' "$RUNS/$1.log")
  grep -o '"seconds": [0-9.]*' "$OUT/$1.metrics.jsonl" | awk -v f="${flop_mb:-0}" -v mb="$MICRO_BATCHES" \
    -v peak="${peak_tf:-0}" -v name="$1" -v tokens="$TOKENS" -v prec="${PRECISION:-fp32}" \
    '{a[NR] = $2} END {if (!NR) {print name ": no steps"; exit}
     first = 1; if (NR > 5) first = 6
     for (i = first; i <= NR; i++) {s += a[i]; n++}; t = s / n; tf = f * mb / t / 1e12;
     printf "%s: %.4f s/step, %.0f tokens/s, %.3g TFLOP/s, MFU %.1f%% of the bf16 peak %s TF (%s training)\n",
       name, t, tokens / t, tf, (peak > 0 ? 100 * tf / peak : 0), peak, prec}'
}
throughput gpu
REFERENCE=("${MODEL[@]}")
MODEL=("${WIDE[@]}")
train wide 1 --run.device cuda --train.steps "$SHORT" && throughput wide
# 4e. train.precision bf16, the native attention kernels against cuDNN's fused SDPA
# (run.attention_backend cudnn: the window and full attentions in cuDNN, the compressed chunks in
# the hand kernel, merged through the log-sum-exps), reference and wide models: tokens/s of each,
# and the losses compared. cuDNN returns bf16 outputs and gradients where the native path keeps
# them float32 (relative 2^-9 per value), so the runs drift apart faster than 4a's: 2e-2
# relative over SHORT steps is loose for rounding and tight for a wrong band or merge (a model
# that attends to the wrong keys stops learning: its loss stays ~0.3 nats above).
PRECISION=bf16
for model in reference wide; do
  if [ "$model" = reference ]; then MODEL=("${REFERENCE[@]}"); else MODEL=("${WIDE[@]}"); fi
  train "${model}_bf16" 1 --run.device cuda --train.precision bf16 --train.steps "$SHORT" &&
    throughput "${model}_bf16"
  # split: cudnn's composition with the hand kernels (what the split alone costs and changes).
  [ "$model" = reference ] && train reference_split 1 --run.device cuda --train.precision bf16 \
    --train.steps "$SHORT" --run.attention_backend split && throughput reference_split
  if ! train "${model}_cudnn" 1 --run.device cuda --train.precision bf16 --train.steps "$SHORT" \
    --run.attention_backend cudnn; then
    echo "$model: the cudnn run failed (its log above): no comparison"; continue
  fi
  throughput "${model}_cudnn"
  join <(losses "${model}_cudnn") <(losses "${model}_bf16") | awk -v steps="$SHORT" -v name="$model" '{d = $2 - $3; if (d < 0) d = -d; r = d / $3;
    if (r >= worst) {worst = r; at = $1}} END {printf "%s: cudnn vs native attention (bf16), %d steps: worst relative loss difference %.3g at step %s: %s (tolerance 2e-2)\n", name, NR, worst, at, (NR == steps && worst <= 2e-2) ? "PASS" : "FAIL"}'
done
exit "$status"
