#!/usr/bin/env bash
# A one-node Slurm on this machine, for tests of the batch templates (slurm/): munged, slurmctld
# and slurmd, started by hand as root (no systemd), everything under one directory.
#
#   scripts/slurm_local.sh start    # installs the packages if missing; prints the env file
#   scripts/slurm_local.sh status   # exit 0 when the daemons this script started are running
#   scripts/slurm_local.sh stop     # cancels its jobs, stops only the processes it started
#
# Then `source $HG_SLURM_DIR/env` (SLURM_CONF) before sbatch, squeue, scontrol.
# HG_SLURM_DIR (default /tmp/hg-slurm) holds the config, state, spool, logs and pid files.
# Facts behind the settings: ../shared/notes/machines.md (cred_expire=10 makes a requeued job
# start again after ~13 s instead of ~2 min; MpiDefault=pmix because Debian's Open MPI has no PMI).
set -euo pipefail

DIR=${HG_SLURM_DIR:-/tmp/hg-slurm}
PACKAGES=(munge slurmctld slurmd slurm-client libpmix-dev)

die() { echo "slurm_local: $*" >&2; exit 1; }

# A pid from `file` when that process is alive and runs `name`.
alive_pid() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q "$name" "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

running() {
  alive_pid "$DIR/munge/munged.pid" munged >/dev/null &&
    alive_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null &&
    alive_pid "$DIR/run/slurmd.pid" slurmd >/dev/null
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "slurm_local: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  cat > "$DIR/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster for tests.
ClusterName=hglocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10,socket=$DIR/munge/munge.socket
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (munged as user munge, slurmd as root)"
  if running; then
    echo "slurm_local: already running in $DIR"
    echo "$DIR/env"
    return 0
  fi
  install_packages
  for port in 6817 6818; do
    if ss -ltn 2>/dev/null | awk '{print $4}' | grep -q ":$port\$"; then
      die "port $port is in use (another Slurm?); stop it first"
    fi
  done
  rm -rf "$DIR"
  mkdir -p "$DIR"/{state,spool,run,log,munge}
  chmod 755 "$DIR"
  # munged refuses keys and directories that others can write or that it does not own.
  chown munge:munge "$DIR/munge"
  chmod 755 "$DIR/munge"  # clients need to reach the socket
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="$DIR/munge/munge.key" \
    --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" ||
    die "munged did not start: $(tail -3 "$DIR/munge/munged.log" 2>/dev/null)"
  write_config
  export SLURM_CONF=$DIR/slurm.conf
  echo "export SLURM_CONF=$DIR/slurm.conf" > "$DIR/env"
  /usr/sbin/slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log")"
  /usr/sbin/slurmd -f "$SLURM_CONF" || die "slurmd did not start: $(tail -5 "$DIR/log/slurmd.log")"
  local state=""
  for _ in $(seq 150); do
    state=$(sinfo -h -o %T 2>/dev/null || true)
    [ "$state" = "idle" ] && break
    sleep 0.2
  done
  [ "$state" = "idle" ] || {
    tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2
    stop
    die "the node did not become idle (state '$state')"
  }
  echo "slurm_local: running in $DIR (node $(hostname -s), $(nproc) CPUs); source $DIR/env"
  echo "$DIR/env"
}

# Stops what `start` recorded: its jobs first (their slurmstepd processes carry our SLURM_CONF),
# then slurmd, slurmctld and munged, by pid.
stop() {
  [ -d "$DIR" ] || { echo "slurm_local: nothing to stop in $DIR"; return 0; }
  export SLURM_CONF=$DIR/slurm.conf
  if alive_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    scancel --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  local pids=() pid
  for entry in "run/slurmd.pid slurmd" "run/slurmctld.pid slurmctld" "munge/munged.pid munged"; do
    set -- $entry
    if pid=$(alive_pid "$DIR/$1" "$2"); then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  # Step daemons of jobs that outlived the cancel: only those started under our config.
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
    if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$DIR/slurm.conf"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  echo "slurm_local: stopped (${#pids[@]} daemons); logs in $DIR/log"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "slurm_local: running in $DIR"; else echo "slurm_local: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
