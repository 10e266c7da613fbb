#!/usr/bin/env bash
# Installs every system package hourglass needs (Debian 12), skipping what is already present.
# Needs root for apt-get (as on CI); prints what it installs.
set -euo pipefail
packages=(cmake g++ make pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libssl-dev
          libboost-program-options-dev libopenblas-dev libdnnl-dev libgtest-dev libgmock-dev
          libbenchmark-dev python3-numpy python3-matplotlib python3-h5py
          clang libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer and clang's sanitizer runtimes
          munge slurmctld slurmd slurm-client libpmix-dev)  # the last five: tests/slurm
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
