"""A sweep as a Slurm job array (`aejax.sweep --executor=slurm`): each run, or each vectorised
group, is one array task submitted through submitit, running the command a local sweep would run.

Time limit and preemption: submitit asks Slurm for USR2 `signal_delay_s` (90) seconds before the
time limit; its handler calls `Task.checkpoint`, which sends SIGTERM to the command (aejax
checkpoints and exits 3), and then requeues the task with `scontrol requeue`; the requeued task
runs the same command, which resumes from the checkpoint. A SIGTERM from Slurm itself (preemption,
scancel, the limit reached) reaches the command directly: it checkpoints and exits 3, and the task
is requeued only if Slurm requeues it (preemption with PreemptMode=REQUEUE; tasks are submitted
with --requeue). A command that fails for its own reason (bad config, divergence) ends its task
with that exit code and is never requeued.

Each run directory records its task in `slurm.json`; `--status` reads it with squeue. No
accounting (sacct) is needed: a task that has left the queue is over, and its run directory and
exit code say how it ended.
"""

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

from absl import flags
from absl import logging

from aejax.errors import Preempted, UserError
from aejax.run import storage

_PARTITION = flags.DEFINE_string("slurm_partition", None,
                                 "--executor=slurm: partition (default: the cluster's).")
_TIME = flags.DEFINE_integer(
    "slurm_time", 60, "--executor=slurm: time limit of each task in minutes; a task still "
    "running 90 s before it checkpoints and is requeued.")
_GPUS_PER_TASK = flags.DEFINE_integer("slurm_gpus_per_task", None,
                                      "--executor=slurm: GPUs of each task.")
_CPUS_PER_TASK = flags.DEFINE_integer("slurm_cpus_per_task", None,
                                      "--executor=slurm: CPUs of each task.")
_ARRAY_PARALLELISM = flags.DEFINE_integer(
    "slurm_array_parallelism", 256, "--executor=slurm: at most this many tasks run at once.")
_OPTIONS = flags.DEFINE_multi_string(
    "slurm_option", [], "--executor=slurm: any other sbatch option as name=value, or name for a "
    "flag, e.g. --slurm_option=account=proj --slurm_option=qos=high (repeat the flag).")

FLAG_NAMES = ("slurm_partition", "slurm_time", "slurm_gpus_per_task", "slurm_cpus_per_task",
              "slurm_array_parallelism", "slurm_option")
RECORD = "slurm.json"  # In each run directory: the task that trains it.
RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT")


@dataclasses.dataclass
class Task:
  """One array task: `command` as a subprocess, its output appended to every file of `logs`
  (a group's runs each get the group's log)."""
  command: list[str]
  logs: list[str]

  def __call__(self) -> int:
    """The command's exit status. Two threads own the process (one waits, one copies its output),
    so the signal handler that runs `checkpoint` in this thread never takes a lock that the
    interrupted code holds."""
    import submitit

    for path in self.logs:  # A task may start before the sweep has recorded it.
      os.makedirs(os.path.dirname(path), exist_ok=True)
    # Slurm sends the time-limit warning to every process of the step, and USR2 would kill the
    # command: it ignores it, and stops on the SIGTERM that `checkpoint` sends.
    warning = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
    self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  preexec_fn=lambda: signal.signal(warning, signal.SIG_IGN))
    self._threads = [threading.Thread(target=self._proc.wait),
                     threading.Thread(target=_copy, args=(self._proc.stdout, self.logs))]
    for thread in self._threads:
      thread.start()
    while self._proc.returncode is None:
      time.sleep(0.5)
    for thread in self._threads:
      thread.join()
    return self._proc.returncode

  def checkpoint(self) -> "object | None":
    """submitit's hook on the time-limit warning, before it requeues this task: the command
    checkpoints (SIGTERM, exit 3) and the requeued task runs the same command, which resumes.
    A command that ended for another reason (finished, failed) is not requeued (None)."""
    import submitit

    proc = getattr(self, "_proc", None)
    if proc is not None:
      if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
      while proc.returncode is None:
        time.sleep(0.1)
      for thread in self._threads:
        thread.join()  # Its last lines ("stopped by SIGTERM at step ...") reach the logs.
      if proc.returncode != Preempted.exit_code:
        return None
      for path in self.logs:
        with open(path, "a") as f:
          f.write("aejax.slurm: checkpointed on Slurm's time-limit warning; requeueing this task, "
                  "which resumes from the checkpoint\n")
    return submitit.helpers.DelayedSubmission(Task(self.command, self.logs))


def _copy(stream, paths: list[str]) -> None:
  files = [open(p, "ab") for p in paths]
  try:
    for line in stream:
      for f in files:
        f.write(line)
        f.flush()
  finally:
    for f in files:
      f.close()


# --- Submitting --------------------------------------------------------------------------------

def check_flags(executor: str) -> None:
  """Slurm flags only with --executor=slurm, and valid values."""
  given = [f"--{n}" for n in FLAG_NAMES if flags.FLAGS[n].present]
  if executor != "slurm":
    if given:
      raise UserError(f"{', '.join(given)} given without --executor=slurm; add it, or drop them")
    return
  if _TIME.value < 1:
    raise UserError(f"--slurm_time={_TIME.value} must be >= 1 (minutes)")
  if _ARRAY_PARALLELISM.value < 1:
    raise UserError(f"--slurm_array_parallelism={_ARRAY_PARALLELISM.value} must be >= 1")
  options()


def options() -> dict[str, str | bool]:
  """--slurm_option values as submitit's additional_parameters."""
  out = {}
  for option in _OPTIONS.value:
    name, sep, value = option.partition("=")
    name = name.strip().lstrip("-")
    if not name:
      raise UserError(f"--slurm_option={option!r} is not name=value or name; e.g. "
                      f"--slurm_option=account=proj")
    out[name.replace("-", "_")] = value if sep else True
  return out


def submit(tasks: list[Task], folder: str, job_name: str) -> list[str]:
  """Submits the tasks as one job array; their job ids ('12_0', ...), in order."""
  import submitit
  from submitit.core import utils as submitit_utils

  try:
    executor = submitit.SlurmExecutor(folder=folder)
  except RuntimeError as e:
    raise UserError(f"--executor=slurm needs Slurm's commands (srun, sbatch, squeue) on PATH "
                    f"({e})") from e
  parameters = {"job_name": job_name, "time": _TIME.value,
                "array_parallelism": _ARRAY_PARALLELISM.value, "partition": _PARTITION.value,
                "gpus_per_task": _GPUS_PER_TASK.value, "cpus_per_task": _CPUS_PER_TASK.value,
                # Requeue on preemption even where the cluster's default is not to.
                "additional_parameters": {"requeue": True, **options()}}
  try:
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    # submitit prints sbatch's error before raising it; the UserError below says it once.
    with contextlib.redirect_stderr(io.StringIO()), executor.batch():
      jobs = [executor.submit(task) for task in tasks]
  except ValueError as e:
    raise UserError(f"bad Slurm parameter ({' '.join(str(e).split())[:300]})") from e
  except (submitit_utils.FailedJobError, OSError) as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    raise UserError(f"sbatch refused the job array: {lines[-1] if lines else e}") from e
  return [job.job_id for job in jobs]


def run_array(groups: list[list[Any]], commands: list[list[str]], root: str, job_name: str,
              detach: bool, ended: Callable[[list[Any], str, int | str | None, str], None]) -> None:
  """Submits one task per group of runs (each with `.workdir`), running its command with the
  output in each run's main.log; records the task in each run directory and, unless `detach`,
  calls `ended(group, job_id, result, submitit_log)` as each task leaves the queue."""
  folder = os.path.join(root, ".slurm")
  tasks = [Task(command, [os.path.join(r.workdir, "main.log") for r in group])
           for command, group in zip(commands, groups)]
  job_ids = submit(tasks, folder, job_name)
  by_id = dict(zip(job_ids, groups))
  for job_id, group in by_id.items():
    for run in group:
      record(run.workdir, job_id, submitit_log(folder, job_id))
  array = job_ids[0].split("_")[0]
  logging.info("Submitted %d Slurm task(s) as job %s: squeue -j %s shows them, scancel %s "
               "cancels them", len(job_ids), array, array, array)
  if detach:
    logging.info("Detached; each run's state: the same command with --status")
    return
  try:
    for job_id in wait(job_ids):
      ended(by_id[job_id], job_id, result(folder, job_id), submitit_log(folder, job_id))
  except KeyboardInterrupt:
    logging.warning("Stopped waiting; the tasks go on in Slurm (scancel %s cancels them)", array)
    raise


def record(workdir: str, job_id: str, log: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with storage.atomic(os.path.join(workdir, RECORD)) as f:
    json.dump({"job_id": job_id, "submitit_log": log, "submitted": time.time()}, f)


def recorded(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, RECORD)) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def submitit_log(folder: str, job_id: str) -> str:
  """Where submitit writes a task's stderr (its own log and any traceback of the task)."""
  from submitit.core import utils as submitit_utils

  return str(submitit_utils.JobPaths(folder, job_id=job_id, task_id=0).stderr)


# --- Watching ----------------------------------------------------------------------------------

def queue() -> dict[str, str]:
  """Job id -> state ('12_3' -> 'PENDING') of this user's jobs still in the queue."""
  try:
    proc = subprocess.run(["squeue", "-h", "-r", "--me", "-o", "%i|%T"], capture_output=True,
                          text=True, timeout=120)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise UserError(f"squeue failed ({e}); is Slurm reachable from this host?") from e
  if proc.returncode:
    raise UserError(f"squeue failed: {proc.stderr.strip()}")
  return dict(line.split("|", 1) for line in proc.stdout.split() if "|" in line)


def result(folder: str, job_id: str) -> int | str | None:
  """A task's exit code, or submitit's error text when the task itself failed, or None when it
  left no result (killed, cancelled, a node failure)."""
  from submitit.core import utils as submitit_utils

  path = submitit_utils.JobPaths(folder, job_id=job_id, task_id=0).result_pickle
  if not path.exists():
    return None
  outcome, value = submitit_utils.pickle_load(path)
  return value if outcome == "success" else str(value).strip().splitlines()[-1]


def wait(job_ids: list[str]) -> Iterator[str]:
  """Yields each job id once it has left the queue, polling squeue less often as time goes on."""
  left, delay = set(job_ids), 1.0
  while left:
    queued = queue()
    done = sorted(j for j in left if j not in queued)
    for job_id in done:
      yield job_id
    left.difference_update(done)
    if left:
      delay = 1.0 if done else min(30.0, delay * 1.5)
      time.sleep(delay)


def state(job_id: str, queued: dict[str, str]) -> str:
  """'running' or 'pending' while the task is in the queue; once it has left, 'failed' (the
  caller has found its run unfinished)."""
  if job_id not in queued:
    return "failed"
  return "running" if queued[job_id] in RUNNING else "pending"
