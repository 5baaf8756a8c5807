"""`launch.sh --slurm` and `--sbatch` under a real Slurm: 2 tasks of 2 CPU devices each train the
1-process 4-device run's parameters; a SIGTERM to the job step stops both at one step with one
checkpoint, exit 3; a batch job warned of its time limit checkpoints, requeues itself and ends as
the uninterrupted run."""

import os
import re
import subprocess
import sys
import time

import pytest

from conftest import (REPO, assert_same_training, require_slurm, run_aejax, saved_state,
                      slurm_job, slurm_queued, wait_for_file_line)
from test_parallel import TINY_VAE, _cpu_env, _rows

# 10 steps (one epoch at batch 6000), two a call, so a signal lands mid-epoch; no grain workers.
FLAGS = [*TINY_VAE, "--config.num_epochs=1", "--config.steps_per_call=2",
         "--config.input_workers=0"]


def _env() -> dict[str, str]:
  """This process's environment at call time (the session's compilation cache is set after
  collection) with launch.sh's Python."""
  return {**os.environ, "PYTHON": sys.executable}


@pytest.fixture(scope="module", autouse=True)
def slurm_up():
  require_slurm()


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """The 1-process 4-device run."""
  workdir = str(tmp_path_factory.mktemp("ref") / "w")
  proc = run_aejax(f"--workdir={workdir}", *FLAGS, f"--data_dir={data_dir}", env=_cpu_env(4))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def _salloc(workdir, data_dir, log) -> subprocess.Popen:
  """launch.sh --slurm in an allocation of 2 tasks on the one node, 2 CPU devices each; the
  output (salloc's, launch.sh's and both tasks') goes to `log`."""
  with open(log, "w") as out:
    return subprocess.Popen(
        ["salloc", "-n2", "./launch.sh", "--slurm", "--cpu_devices", "2", f"--workdir={workdir}",
         *FLAGS, f"--data_dir={data_dir}"], cwd=REPO, env=_env(), stdout=out,
        stderr=subprocess.STDOUT)


def test_two_tasks_train_the_one_process_parameters(reference, data_dir, tmp_path):
  workdir, log = str(tmp_path / "w"), str(tmp_path / "salloc.log")
  assert _salloc(workdir, data_dir, log).wait(timeout=900) == 0, open(log).read()[-4000:]
  assert "process 0 of 2, 2 local of 4 devices (cpu)" in open(log).read()
  (state, _), (ref_state, _) = saved_state(workdir), saved_state(reference)
  assert int(state["step"]) == 10
  assert_same_training(state["params"], ref_state["params"])
  assert [(r["epoch"], r["split"]) for r in _rows(workdir)] == [(1, "train"), (1, "test")]


def test_sigterm_to_the_job_step_stops_both_tasks_at_one_step_with_one_checkpoint(
    data_dir, tmp_path):
  workdir, log = str(tmp_path / "w"), str(tmp_path / "salloc.log")
  proc = _salloc(workdir, data_dir, log)
  try:
    # Both processes catch signals from before this line on (process 1 has passed the collective
    # initialisation that precedes it), and compile for seconds after it: SIGTERM to the job step
    # now stops both after the first call.
    wait_for_file_line(log, "Train steps run as")
    (job_id,) = re.findall(r"Granted job allocation (\d+)", open(log).read())
    subprocess.run(["scancel", "--signal=TERM", f"{job_id}.0"], check=True)
    proc.wait(timeout=600)
  finally:
    if proc.poll() is None:
      proc.kill()
  out = open(log).read()
  assert proc.returncode == 3, out[-4000:]
  stops = re.findall(r"aejax: stopped by SIGTERM at step (\d+)", out)
  assert stops == ["2", "2"], out[-4000:]  # Both tasks, at one step: the first call's end.
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
  # The resume from such a checkpoint is the batch job's test below.


def test_sbatch_job_warned_of_its_time_limit_requeues_itself_and_resumes(
    reference, data_dir, tmp_path):
  workdir, log = str(tmp_path / "w"), str(tmp_path / "job.log")
  proc = subprocess.run(
      ["./launch.sh", "--sbatch", "-n2", f"--output={log}", "--parsable", "--",
       "--cpu_devices", "2", f"--workdir={workdir}", *FLAGS, f"--data_dir={data_dir}"],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  job_id = proc.stdout.strip().split(";")[0]
  try:
    wait_for_file_line(log, "Train steps run as")  # As above: stops at step 2.
    # What Slurm sends the batch shell AEJAX_WARN_SECONDS before the time limit.
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True)
    deadline = time.time() + 600
    while slurm_queued(job_id) and time.time() < deadline:
      time.sleep(1)
  finally:
    subprocess.run(["scancel", job_id])
  out = open(log).read()
  assert re.findall(r"aejax: stopped by SIGTERM at step (\d+)", out) == ["2", "2"], out[-4000:]
  assert f"requeueing job {job_id}" in out
  assert "Resuming from the checkpoint at step 2" in out, out[-4000:]
  info = slurm_job(job_id)
  assert info["Restarts"] == "1" and info["JobState"] == "COMPLETED", info
  (state, _), (ref_state, _) = saved_state(workdir), saved_state(reference)
  assert int(state["step"]) == 10
  assert_same_training(state["params"], ref_state["params"])
