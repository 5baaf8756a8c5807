#!/usr/bin/env bash
# Starts the same `python -m aejax.main` command on a laptop, N local processes, a SLURM
# allocation (or a batch job it submits) or every worker of a TPU VM pod. ./launch.sh --help lists
# the routes.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: ./launch.sh [route] [main flags]

routes
  (none)                       one process using every local device
  --nproc N [--cpu_devices K]  N processes on this host, coordinator on 127.0.0.1; with GPUs one
                               process per GPU, on CPU K devices per process (default 1)
  --slurm [--cpu_devices K]    inside a SLURM allocation: one process per task via srun (on CPU
                               nodes K devices each); in a batch job, SIGUSR1 (the time-limit
                               warning --sbatch asks for) checkpoints and requeues the job
  --sbatch [sbatch options] -- submits a batch job running --slurm with the main flags after
                               `--`, requeueable (--requeue) and warned with SIGUSR1
                               $AEJAX_WARN_SECONDS (default 180) seconds before its time limit
  --tpu NAME --zone ZONE       the command on every worker of TPU VM NAME via
                               gcloud compute tpus tpu-vm ssh --worker=all (the repository must be
                               at $AEJAX_REMOTE_DIR, default ~/aejax, on every worker)

options
  --host_address ADDR          for --nproc: bind the coordinator to ADDR instead of loopback
  --grace S                    for --nproc and --slurm: seconds the others get to exit after one
                               process ends (--nproc: fails) before they are killed (default 60)

examples
  ./launch.sh --config=experiments/vae.py --workdir=/tmp/vae --manual_dir=/path/to/mnist_archives
  ./launch.sh --nproc 2 --cpu_devices 2 --config=experiments/vae.py --workdir=/tmp/vae2
  salloc -N2 --gpus-per-node=8 --ntasks-per-node=8 ./launch.sh --slurm --config=experiments/vae.py --workdir=/shared/vae
  ./launch.sh --sbatch -N2 --gpus-per-node=8 --ntasks-per-node=8 --time=4:00:00 -- --config=experiments/vae.py --workdir=/shared/vae
  ./launch.sh --tpu my-v4-32 --zone us-central2-b --config=experiments/vae.py --workdir=/mnt/shared/vae

Every other flag is handed to `python -m aejax.main` unchanged, identically on every process.
USAGE
}

die() { echo "launch.sh: error: $*" >&2; exit 2; }

route=local nproc=0 cpu_devices=1 cpu_devices_given="" tpu_name="" tpu_zone=""
host_address=127.0.0.1 grace=60
args=() sbatch_args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --nproc) route=nproc; nproc=${2:?--nproc needs a number}; shift 2 ;;
    --cpu_devices) cpu_devices=${2:?--cpu_devices needs a number}; cpu_devices_given=1; shift 2 ;;
    --slurm) route=slurm; shift ;;
    --sbatch)
      route=sbatch; shift
      while (($#)) && [[ "$1" != -- ]]; do sbatch_args+=("$1"); shift; done
      (($#)) || die "--sbatch needs -- between the sbatch options and the main flags"
      shift ;;
    --tpu) route=tpu; tpu_name=${2:?--tpu needs the TPU VM name}; shift 2 ;;
    --zone) tpu_zone=${2:?--zone needs a zone}; shift 2 ;;
    --host_address) host_address=${2:?--host_address needs an address}; shift 2 ;;
    --grace) grace=${2:?--grace needs seconds}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
python=${PYTHON:-python}
# What makes a process use K CPU devices (--cpu_devices) whatever accelerators the host has.
cpu_env=(JAX_PLATFORMS=cpu
         "XLA_FLAGS=${XLA_FLAGS:-} --xla_force_host_platform_device_count=$cpu_devices")

case "$route" in
  local)
    exec "$python" -m aejax.main "${args[@]}" ;;

  slurm)
    [[ -n "${SLURM_JOB_ID:-}" ]] ||
      die "--slurm needs a SLURM allocation: run it inside salloc or sbatch, or submit with --sbatch"
    [[ "$cpu_devices" =~ ^[1-9][0-9]*$ ]] || die "--cpu_devices needs a positive number"
    env=()
    [[ -z "$cpu_devices_given" ]] || env=("${cpu_env[@]}")
    # JAX reads the coordinator, process count and index from SLURM's environment. srun runs in
    # the background so that this shell can act on signals. SIGTERM or Ctrl-C here: SIGTERM to
    # every task through scancel (srun itself would kill the step at once), so they stop at one
    # step, checkpoint and exit 3; SIGUSR1, the time-limit warning of a batch job, does the same
    # and then requeues the job, whose rerun of this command resumes.
    warned=""
    stop_tasks() { scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null || true; }
    trap stop_tasks TERM INT
    trap 'warned=1; stop_tasks' USR1
    # Not --kill-on-bad-exit: a task that checkpointed and exited 3 would have its peers killed
    # before they exit 3 too. JAX's heartbeat ends the others when one dies, and --wait kills
    # what still runs `grace` seconds after the first task ended.
    env "${env[@]}" srun --kill-on-bad-exit=0 --wait="$grace" "$python" -m aejax.main \
      --distributed "${args[@]}" &
    srun_pid=$!
    # A trapped signal ends `wait` early (status > 128): wait again until srun itself has ended.
    while status=0; wait $srun_pid || status=$?; kill -0 $srun_pid 2>/dev/null; do :; done
    if [[ -n "$warned" && $status == 3 ]]; then
      echo "launch.sh: checkpointed on the time-limit warning; requeueing job $SLURM_JOB_ID" >&2
      scontrol requeue "$SLURM_JOB_ID"
    fi
    exit $status ;;

  sbatch)
    command -v sbatch >/dev/null || die "--sbatch needs SLURM's sbatch on PATH"
    ((${#args[@]})) || die "--sbatch needs the main flags after --, e.g." \
      "-- --config=experiments/vae.py --workdir=DIR"
    forward=()
    [[ -z "$cpu_devices_given" ]] || forward=(--cpu_devices "$cpu_devices")
    # This script is the batch script; it holds no path of its own, so any copy of it runs.
    # --open-mode=append keeps the output of the runs before a requeue.
    exec sbatch --requeue --signal="B:USR1@${AEJAX_WARN_SECONDS:-180}" --open-mode=append \
      "${sbatch_args[@]}" "$0" --slurm "${forward[@]}" "${args[@]}" ;;

  tpu)
    [[ -n "$tpu_zone" ]] || die "--tpu needs --zone ZONE"
    command -v gcloud >/dev/null || die "--tpu needs the gcloud CLI on PATH"
    remote_dir=${AEJAX_REMOTE_DIR:-'~/aejax'}
    printf -v cmd '%q ' "$python" -m aejax.main --distributed "${args[@]}"
    exec gcloud compute tpus tpu-vm ssh "$tpu_name" --zone "$tpu_zone" --worker=all \
      --command "cd $remote_dir && $cmd" ;;

  nproc)
    [[ "$nproc" =~ ^[1-9][0-9]*$ ]] || die "--nproc needs a positive number, got '$nproc'"
    [[ "$cpu_devices" =~ ^[1-9][0-9]*$ ]] || die "--cpu_devices needs a positive number"
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    gpus=0
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
      gpus=$(nvidia-smi -L | wc -l)
      ((nproc <= gpus)) || die "--nproc $nproc exceeds the $gpus GPUs of this host"
    fi
    pids=()
    # A preemption notice (SIGTERM) or Ctrl-C reaches every process, which checkpoints and exits 3.
    trap 'kill -TERM ${pids[*]} 2>/dev/null || true' INT TERM
    for ((i = 0; i < nproc; i++)); do
      if ((gpus > 0)); then
        env=(JAX_LOCAL_DEVICE_IDS=$i)
      else
        env=("${cpu_env[@]}")
      fi
      env "${env[@]}" JAX_COORDINATOR_BIND_ADDRESS="$host_address:$port" \
        "$python" -m aejax.main --distributed --coordinator_address="$host_address:$port" \
        --num_processes="$nproc" --process_id="$i" "${args[@]}" &
      pids+=($!)
    done
    # Wait for all; once one fails, the others get `grace` seconds (JAX's heartbeat usually ends
    # them sooner) and are then killed, so a dead process never hangs the run.
    status=0 left=$nproc watchdog=""
    while ((left > 0)); do
      done_pid=""
      if wait -n -p done_pid "${pids[@]}" 2>/dev/null; then rc=0; else rc=$?; fi
      if [[ -z "${done_pid:-}" ]]; then
        # A forwarded signal ends the wait early: keep waiting for the processes to checkpoint.
        ((rc > 128)) && continue
        break
      fi
      left=$((left - 1))
      pids=("${pids[@]/$done_pid}")
      if ((rc != 0 && status == 0)); then
        status=$rc
        echo "launch.sh: process $done_pid exited with $rc; stopping the others within ${grace}s" >&2
        ( sleep "$grace"; kill ${pids[*]} 2>/dev/null || true ) >/dev/null 2>&1 &
        watchdog=$!
      elif ((rc != 0)); then
        echo "launch.sh: process $done_pid exited with $rc" >&2
      fi
    done
    [[ -z "$watchdog" ]] || kill "$watchdog" 2>/dev/null || true
    exit $status ;;
esac
