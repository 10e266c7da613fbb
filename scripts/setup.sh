#!/usr/bin/env bash
# Installs every system package hourglass needs (Debian 12), skipping what is already present.
# Needs root for apt-get (as on CI); prints what it installs. Also TensorBoard (pip, in a venv).
set -euo pipefail
packages=(cmake g++ make pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libssl-dev
          libboost-program-options-dev libopenblas-dev libdnnl-dev libgtest-dev libgmock-dev
          libbenchmark-dev python3-numpy python3-matplotlib python3-h5py python3-venv
          libprotobuf-dev protobuf-compiler
          clang libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer and clang's sanitizer runtimes
          munge slurmctld slurmd slurm-client libpmix-dev)  # the last five: tests/slurm
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# TensorBoard's own event-file reader, for the log.tensorboard test: Debian has no package of it,
# so pip installs it into a virtual environment (which also sees Debian's numpy).
# The test looks for it at the same place (HG_VENV, else ~/.cache/hourglass/venv).
VENV=${HG_VENV:-$HOME/.cache/hourglass/venv}
if ! "$VENV/bin/python" -c "import tensorboard" 2>/dev/null; then
  echo "setup: installing tensorboard into $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "tensorboard==2.21.0"
fi
# cuDNN's header-only C++ frontend, for run.attention_backend cudnn (layers/cuda/cudnn_attention.cpp):
# only where CUDA is, since nothing else uses it; layers/CMakeLists.txt finds it in the venv.
if [ -x /usr/local/cuda/bin/nvcc ] &&
   ! ls "$VENV"/lib/python3*/site-packages/include/cudnn_frontend.h >/dev/null 2>&1; then
  echo "setup: installing the cuDNN frontend headers into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "nvidia-cudnn-frontend==1.32.0"
fi
