#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests and for trying the cluster path of aejax
# (aejax.sweep --executor=slurm, launch.sh --slurm and --sbatch) without a cluster.
#
#   eval "$(tools/slurm_local.sh start [DIR])"   # installs if missing, starts, waits for an idle
#                                                # node, prints `export SLURM_CONF=DIR/slurm.conf`
#   tools/slurm_local.sh stop [DIR]              # cancels its jobs, stops its daemons by pid
#
# Everything it writes (config, state, spool, logs, munge's socket) lives in DIR, default
# ${TMPDIR:-/tmp}/aejax-slurm. It needs root (apt-get, runuser, daemons as root) and no systemd.
# The node declares AEJAX_SLURM_CPUS CPUs (default 8) whatever the machine has, so a 4-task array
# or a 2-task allocation runs at once on a 2-core machine (its tasks then share the cores).
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "slurm_local.sh: error: $*" >&2; exit 2; }

action=${1:-}
dir=${2:-${TMPDIR:-/tmp}/aejax-slurm}
cpus=${AEJAX_SLURM_CPUS:-8}
conf=$dir/slurm.conf

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds=$1; shift
  for ((i = 0; i < seconds * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_if_missing() {
  local missing=()
  for cmd in slurmctld slurmd sinfo munged; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  ((${#missing[@]} == 0)) && return
  echo "slurm_local.sh: installing slurmctld slurmd slurm-client munge" >&2
  # The packages' own services are never started: this script runs the daemons itself.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge \
    >/dev/null 2>&1 || { apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge \
        >/dev/null; }
}

write_conf() {
  local host
  host=$(hostname -s)
  cat >"$conf" <<CONF
ClusterName=aejax
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# munge's socket in DIR; a requeued job waits cred_expire seconds before it may start again
# (120 by default), which would make every requeue a two-minute wait.
AuthInfo=socket=$dir/munge/munge.socket.2,cred_expire=5
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No systemd and no cgroup setup: track job processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Schedule every second or two, not every minute, so a submitted or requeued job starts at once.
SchedulerParameters=bf_interval=1,sched_interval=2
ReturnToService=2
KillWait=10
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 \
  State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
    echo "export SLURM_CONF=$conf"
    return
  fi
  ((EUID == 0)) || die "start needs root: it runs munged, slurmctld and slurmd (as root)"
  install_if_missing
  mkdir -p "$dir"/{ctld,d,log,munge}
  chmod 0755 "$dir"  # munged runs as munge: it must reach its socket inside (mktemp -d is 0700).
  chown munge: "$dir/munge"
  chmod 0755 "$dir/munge"  # munged wants its socket's directory searchable by every client.
  if ! alive "$dir/munge/munged.pid"; then
    runuser -u munge -- munged --socket="$dir/munge/munge.socket.2" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
      --seed-file="$dir/munge/munged.seed"
  fi
  write_conf
  export SLURM_CONF=$conf
  slurmctld -i
  slurmd
  if ! wait_for 60 bash -c '[[ "$(sinfo -h -o %T)" == idle ]]'; then
    tail -n 5 "$dir"/log/*.log >&2
    die "the node did not become idle within 60 s (logs above, in $dir/log)"
  fi
  echo "export SLURM_CONF=$conf"
}

stop() {
  if [[ -f "$conf" ]] && alive "$dir/slurmctld.pid"; then
    SLURM_CONF=$conf scancel --user="$(id -un)" 2>/dev/null || true
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    alive "$pidfile" || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    wait_for 15 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
  done
}

case "$action" in
  start) start ;;
  stop) stop ;;
  -h|--help) usage ;;
  *) die "unknown action '$action'; use start or stop (--help says more)" ;;
esac
