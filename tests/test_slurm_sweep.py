"""`aejax.sweep --executor=slurm` against a real Slurm: a job array ends as the same sweep run
locally, a task sent the time-limit signal is requeued and resumes bitwise, a bad config fails
once, and --vectorize groups are the array's tasks."""

import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aejax import slurm as slurm_lib
from aejax.run import rundir
from conftest import (REPO, require_slurm, run_aejax, saved_state, slurm_job, slurm_queued,
                      wait_for_file_line)

# Digits 0 and 1 only (12,665 train images): 20 steps per epoch of batch 632, 5 per call, 2
# epochs, so a signal during start-up stops a run at step 5, mid-epoch.
SMALL = ["--config=experiments/vae.py", "--config.num_epochs=2", "--config.batch_size=632",
         "--config.eval_batch_size=1000", "--config.model.hidden=(16,)",
         "--config.model.latents=4", "--config.steps_per_call=5",
         "--config.input.train_labels=(0,1)"]
SEEDS_LRS = ["--sweep=seed=0,1", "--sweep=learning_rate=0.001,0.003"]
NAMES = [f"vae-seed={s}-learning_rate={lr}" for s in (0, 1) for lr in ("0.001", "0.003")]
# Written at the time of writing; every other field of a metrics line is computed.
CLOCK = ("time", "examples_per_sec")


@pytest.fixture(scope="module", autouse=True)
def slurm_up():
  require_slurm()


def _sweep(root, data_dir, *extra, timeout=900):
  return run_aejax(*SMALL, f"--workdir={root}", f"--data_dir={data_dir}", *extra,
                   module="aejax.sweep", timeout=timeout)


@pytest.fixture(scope="module")
def local(data_dir, tmp_path_factory):
  """The root of the 2 seeds x 2 learning rates sweep, run locally (the reference)."""
  root = str(tmp_path_factory.mktemp("local") / "root")
  proc = _sweep(root, data_dir, *SEEDS_LRS)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root


def _metrics(run_dir):
  return [{k: v for k, v in r.items() if k not in CLOCK} for r in rundir.read_metrics(run_dir)]


def _compare(root, tmp_path):
  """aejax.compare's table without its clock columns (examples/s, wall time)."""
  proc = run_aejax(root, module="aejax.compare", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.startswith("|")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  keep = [i for i, h in enumerate(header) if h not in ("examples/s", "wall time")]
  return [[[c.strip() for c in l.strip("|").split("|")][i] for i in keep]
          for l in [lines[0], *lines[2:]]]


def _status(root, data_dir, *extra):
  proc = _sweep(root, data_dir, *extra, "--status", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  states = {}
  for line in proc.stdout.splitlines():
    state, name, *detail = line.split(None, 2)
    states[name] = [state, *detail] if detail else [state, ""]
  return states


def _params(run_dir):
  return [np.asarray(x) for x in jax.tree.leaves(saved_state(run_dir)[0]["params"])]


def test_job_array_ends_as_the_local_sweep_and_a_resubmission_does_nothing(
    local, data_dir, tmp_path):
  root = str(tmp_path / "root")
  proc = _sweep(root, data_dir, *SEEDS_LRS, "--executor=slurm", "--detach")
  assert proc.returncode == 0, proc.stderr[-3000:]
  (array,) = re.findall(r"Submitted 4 Slurm task\(s\) as job (\d+)", proc.stderr)
  jobs = {n: slurm_lib.recorded(os.path.join(root, n))["job_id"] for n in NAMES}
  assert sorted(jobs.values()) == [f"{array}_{i}" for i in range(4)]  # One array, 4 tasks.
  # Detached: --status names each run's task while the array runs, then reports it done.
  status = _status(root, data_dir, *SEEDS_LRS)
  assert sorted(status) == sorted(NAMES)
  for name, (state, detail) in status.items():
    assert state in ("pending", "running", "done"), status
    assert state == "done" or detail == f"job {jobs[name]}", status
  deadline = time.time() + 600
  while slurm_queued(array) and time.time() < deadline:
    time.sleep(1)
  assert _status(root, data_dir, *SEEDS_LRS) == {n: ["done", ""] for n in NAMES}

  # The same final metrics lines, and the same table, as the local sweep.
  for name in NAMES:
    assert _metrics(os.path.join(root, name)) == _metrics(os.path.join(local, name)), name
    assert rundir.is_finished(os.path.join(root, name), 2)
  assert _compare(root, tmp_path) == _compare(local, tmp_path)

  # A re-submission finds nothing to do: no array is submitted and no file changes.
  before = {n: open(os.path.join(root, n, "metrics.jsonl")).read() for n in NAMES}
  proc = _sweep(root, data_dir, *SEEDS_LRS, "--executor=slurm")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "4 finished (skipped), 0 to run on Slurm" in proc.stderr
  assert "Submitted" not in proc.stderr
  assert before == {n: open(os.path.join(root, n, "metrics.jsonl")).read() for n in NAMES}


def test_a_warned_or_preempted_task_is_requeued_and_resumes_bitwise_and_a_bad_config_fails_once(
    local, data_dir, tmp_path):
  root = str(tmp_path / "root")
  # Sent the time-limit warning; requeued by Slurm (as a preemption with PreemptMode=REQUEUE
  # does); a bad config.
  warned, preempted = "vae-seed=0-learning_rate=0.001", "vae-seed=0-learning_rate=0.003"
  bad = "vae-seed=0-learning_rate=-1"
  sweep_flags = ["--sweep=seed=0", "--sweep=learning_rate=0.001,0.003,-1"]
  sweep = subprocess.Popen([sys.executable, "-m", "aejax.sweep", *SMALL, f"--workdir={root}",
                            f"--data_dir={data_dir}", *sweep_flags, "--executor=slurm"],
                           cwd=REPO, stderr=subprocess.PIPE, text=True)
  logs = {n: os.path.join(root, n, "main.log") for n in (warned, preempted, bad)}
  try:
    # A run catches signals from before this line on, and compiles for seconds after it: a
    # signal sent now reaches it before its first call ends.
    for name in (warned, preempted):
      wait_for_file_line(logs[name], "Train steps run as")
    jobs = {n: slurm_lib.recorded(os.path.join(root, n))["job_id"] for n in logs}
    subprocess.run(["scancel", "--signal=USR2", jobs[warned]], check=True)  # submitit's warning
    subprocess.run(["scontrol", "requeue", jobs[preempted]], check=True)  # SIGTERM, then requeue
    stderr = sweep.communicate(timeout=900)[1]
  finally:
    if sweep.poll() is None:
      sweep.kill()
  assert sweep.returncode == 1, stderr[-3000:]  # A run failed.

  # Each checkpointed at step 5, mid-epoch, was requeued once and resumed, and ends with the
  # uninterrupted run's parameters and metrics lines.
  for name in (warned, preempted):
    text = open(logs[name]).read()
    stopped = text.index("aejax: stopped by SIGTERM at step 5 (epoch 1, step 5 of 20)")
    assert stopped < text.index("Resuming from the checkpoint at step 5"), text[-3000:]
    assert slurm_job(jobs[name])["Restarts"] == "1"
    for x, y in zip(_params(os.path.join(root, name)), _params(os.path.join(local, name)),
                    strict=True):
      np.testing.assert_array_equal(x, y)
    assert _metrics(os.path.join(root, name)) == _metrics(os.path.join(local, name))
    assert re.search(rf"Finished \S+/{re.escape(name)} as Slurm job {jobs[name]}\n", stderr)
  # submitit's checkpoint hook stopped the warned run before it requeued the task.
  text = open(logs[warned]).read()
  requeued = text.index("aejax.slurm: checkpointed on Slurm's time-limit warning; requeueing")
  assert text.index("aejax: stopped by SIGTERM") < requeued < text.index("Resuming from")
  assert "aejax.slurm: checkpointed" not in open(logs[preempted]).read()

  # The bad config: one start, exit 2, no requeue, and one line in the sweep's report.
  assert slurm_job(jobs[bad])["Restarts"] == "0"
  bad_log = open(logs[bad]).read()
  assert bad_log.count("aejax: error:") == 1 and "Traceback" not in bad_log
  (line,) = [l for l in stderr.splitlines() if "FAILED" in l]
  assert (f"FAILED {os.path.join(root, bad)} (exit 2 as Slurm job {jobs[bad]}; see "
          f"{logs[bad]}): aejax: error: config.learning_rate=-1.0 must be > 0") in line
  assert "1 of 3 runs failed" in stderr
  status = _status(root, data_dir, *sweep_flags)
  assert status[warned] == status[preempted] == ["done", ""]
  assert status[bad][0] == "failed" and status[bad][1].startswith(f"job {jobs[bad]}: aejax: error:")


def test_vectorized_groups_are_the_array_tasks_and_end_as_locally(data_dir, tmp_path):
  roots = {}
  for executor in ("local", "slurm"):
    roots[executor] = str(tmp_path / executor)
    proc = _sweep(roots[executor], data_dir, *SEEDS_LRS, "--vectorize", "--max_group_size=2",
                  f"--executor={executor}")
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Submitted 2 Slurm task(s)" in proc.stderr
  jobs = {n: slurm_lib.recorded(os.path.join(roots["slurm"], n))["job_id"] for n in NAMES}
  # Plan order: the first two runs are one group (one task), the last two the other.
  assert jobs[NAMES[0]] == jobs[NAMES[1]] != jobs[NAMES[2]] == jobs[NAMES[3]]
  for name in NAMES:
    assert f"Finished {os.path.join(roots['slurm'], name)} as Slurm job {jobs[name]}" in proc.stderr
    assert _metrics(os.path.join(roots["slurm"], name)) == _metrics(
        os.path.join(roots["local"], name)), name
    for x, y in zip(_params(os.path.join(roots["slurm"], name)),
                    _params(os.path.join(roots["local"], name)), strict=True):
      np.testing.assert_array_equal(x, y)
    # Each run of a group has the group's log: the task trained them as one group of 2.
    assert "vectorised group of 2 runs" in open(os.path.join(roots["slurm"], name,
                                                              "main.log")).read()
  assert _compare(roots["slurm"], tmp_path) == _compare(roots["local"], tmp_path)


@pytest.mark.parametrize("flags,expected", [
    (["--slurm_time=10"], "--slurm_time given without --executor=slurm"),
    (["--executor=slurm", "--parallel=2"], "--slurm_array_parallelism bounds"),
    (["--detach"], "--detach needs --executor=slurm"),
    (["--executor=slurm", "--slurm_option=="], "--slurm_option='=' is not name=value"),
    (["--executor=slurm", "--slurm_partition=nosuch"], "sbatch refused the job array"),
])
def test_bad_slurm_input_is_one_line_exit_2(flags, expected, data_dir, tmp_path):
  proc = _sweep(tmp_path / "root", data_dir, "--sweep=seed=0", *flags, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("aejax: error: ") and expected in lines[-1], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert [l for l in lines if "error:" in l] == lines[-1:], proc.stderr  # Said once.
  assert not (tmp_path / "root" / "vae-seed=0").exists()  # No run directory.
