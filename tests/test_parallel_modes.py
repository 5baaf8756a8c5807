"""Every parallel mode on one process and across processes: {mesh, pmap} x {device, stream} x
{1 process x 4 devices, 2 processes x 2 devices} train the same parameters, and a 2-process run
stopped by SIGTERM resumes to the same end.

Each cell is one 10-step run (one epoch at batch 6000) of a tiny VAE on the real MNIST, run
once per module and shared by the tests; the 1-process mesh/device run is the reference.

Time: 28 processes: the eight cells (four 4-device runs, four 2-process launches) and, per mode, an
interrupted 2-process launch and its resume; every process imports JAX and compiles its program (the
cache serves it only to a later process with the same program and device layout: a resume, not
another mode).
"""

import os
import signal

import numpy as np
import pytest

from conftest import assert_same_training, run_aejax
from test_parallel import TINY_VAE, _cpu_env, _final_state, _launch, _rows

# Two steps a call, so a SIGTERM lands mid-epoch; no grain worker processes on a 2-core CI.
FLAGS = [*TINY_VAE, "--config.num_epochs=1", "--config.steps_per_call=2",
         "--config.input_workers=0"]
PARALLEL, INPUT, LAYOUTS = ("mesh", "pmap"), ("device", "stream"), ("1x4", "2x2")
REFERENCE = ("mesh", "device", "1x4")


def _mode_flags(parallel, input_mode):
  return [f"--config.parallel={parallel}", f"--config.input_mode={input_mode}"]


def _two_processes(workdir, parallel, input_mode, data_dir, **kwargs):
  return _launch("--nproc", "2", "--cpu_devices", "2", f"--workdir={workdir}", *FLAGS,
                 *_mode_flags(parallel, input_mode), f"--data_dir={data_dir}", **kwargs)


@pytest.fixture(scope="module")
def cell(data_dir, tmp_path_factory):
  """(parallel, input_mode, layout) -> the workdir of that cell's run, run on first use."""
  root, done = tmp_path_factory.mktemp("cells"), {}

  def get(parallel, input_mode, layout):
    key = (parallel, input_mode, layout)
    if key not in done:
      workdir = str(root / "-".join(key))
      if layout == "1x4":
        proc = run_aejax(f"--workdir={workdir}", *FLAGS, *_mode_flags(parallel, input_mode),
                         f"--data_dir={data_dir}", env=_cpu_env(4))
        out = proc.stderr
      else:
        proc = _two_processes(workdir, parallel, input_mode, data_dir)
        out, _ = proc.communicate(timeout=900)
      assert proc.returncode == 0, out[-4000:]
      done[key] = workdir
    return done[key]

  return get


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("input_mode", INPUT)
@pytest.mark.parametrize("parallel", PARALLEL)
def test_every_mode_and_layout_trains_the_same_parameters(cell, parallel, input_mode, layout):
  workdir, reference = cell(parallel, input_mode, layout), cell(*REFERENCE)
  (state, meta), (ref_state, _) = _final_state(workdir), _final_state(reference)
  assert meta == {"epoch": 1, "epoch_step": 0, "steps_per_epoch": 10, "metric_sums": {}}
  assert int(state["step"]) == 10
  assert_same_training(state["params"], ref_state["params"])
  # One train and one test line (only process 0 writes), with the reference's losses.
  rows, ref_rows = _rows(workdir), _rows(reference)
  assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "test")]
  np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows], rtol=1e-5)


@pytest.mark.parametrize("parallel, input_mode", [(p, i) for p in PARALLEL for i in INPUT])
def test_sigterm_stops_both_processes_at_one_step_and_the_rerun_ends_as_uninterrupted(
    cell, parallel, input_mode, data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  proc = _two_processes(workdir, parallel, input_mode, data_dir, start_new_session=True)
  try:
    lines = []
    for line in proc.stdout:  # SIGTERM to launch.sh once training starts.
      lines.append(line)
      if "Compiled" in line:
        proc.send_signal(signal.SIGTERM)
        break
    out = "".join(lines) + proc.communicate(timeout=600)[0]
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  assert proc.returncode == 3, out[-4000:]
  # Both processes stopped at the same step and exited 3; one checkpoint, at that step.
  stops = {l.split("at step ")[1].split()[0] for l in out.splitlines()
           if l.startswith("aejax: stopped by SIGTERM at step")}
  assert len(stops) == 1 and out.count("aejax: stopped by SIGTERM") == 2, out[-4000:]
  assert out.count("exited with 3") == 2, out[-4000:]
  stopped_at = int(stops.pop())
  assert 0 < stopped_at < 10 and stopped_at % 2 == 0, stopped_at
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(stopped_at)]

  proc = _two_processes(workdir, parallel, input_mode, data_dir)
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-4000:]
  assert f"Resuming from the checkpoint at step {stopped_at}" in out
  (state, _), (straight, _) = _final_state(workdir), _final_state(cell(parallel, input_mode, "2x2"))
  assert int(state["step"]) == 10
  assert_same_training(state["params"], straight["params"])
