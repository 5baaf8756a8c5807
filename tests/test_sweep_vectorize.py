"""`python -m aejax.sweep --vectorize`: groups, run directories, preemption, bad input."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_aejax, saved_state
from aejax.run import rundir

# Digits 0 and 1 only (12,665 train images): 20 steps per epoch of batch 632, 5 per call, so a
# SIGTERM stops the group mid-epoch; every group shares the restricted split.
SMALL = ["--config.batch_size=632", "--config.eval_batch_size=1000",
         "--config.model.hidden=(16,)", "--config.model.latents=4", "--config.steps_per_call=5",
         "--config.input.train_labels=(0,1)"]
LR_SEED = ["--sweep=seed=0,1", "--sweep=learning_rate=0.001,0.003"]


def _args(root, data_dir, *extra, epochs=2):
  return ["--config=experiments/vae.py", f"--workdir={root}", f"--data_dir={data_dir}",
          "--vectorize", f"--config.num_epochs={epochs}", *SMALL, *extra]


def _final_params(run_dir):
  return saved_state(run_dir)[0]["params"]


@pytest.fixture(scope="module")
def group_runs(data_dir, tmp_path_factory):
  """(interrupted-and-resumed root, uninterrupted root, stderr of the SIGTERMed sweep)."""
  base = tmp_path_factory.mktemp("vectorize")
  straight, stopped = str(base / "straight"), str(base / "stopped")
  proc = run_aejax(*_args(straight, data_dir, *LR_SEED), module="aejax.sweep", timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  child = subprocess.Popen([sys.executable, "-m", "aejax.sweep",
                            *_args(stopped, data_dir, *LR_SEED)],
                           cwd=REPO, stderr=subprocess.PIPE, text=True)
  for line in child.stderr:  # SIGTERM once the group's program is compiled.
    if "Compiled" in line:
      child.send_signal(signal.SIGTERM)
      break
  rest = child.stderr.read()
  assert child.wait(timeout=600) == 3, rest[-3000:]
  resumed = run_aejax(*_args(stopped, data_dir, *LR_SEED), module="aejax.sweep", timeout=900)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  return stopped, straight, rest


def test_sigterm_checkpoints_every_run_and_resume_is_bitwise(group_runs, data_dir, tmp_path):
  stopped, straight, stderr = group_runs
  assert "aejax: stopped by SIGTERM at step 5 (epoch 1, step 5 of 20)" in stderr
  names = sorted(os.listdir(straight))
  assert names == sorted(os.listdir(stopped)) and len(names) == 4
  for name in names:
    a, b = _final_params(os.path.join(stopped, name)), _final_params(os.path.join(straight, name))
    for x, y in zip(jax_leaves(a), jax_leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)
    assert rundir.is_finished(os.path.join(stopped, name), 2)
  # An ordinary run directory (the runs differ only in values): aejax.analyze reads one as it
  # reads aejax.main's.
  proc = run_aejax(f"--workdir={os.path.join(stopped, names[-1])}", f"--data_dir={data_dir}",
                   "--k=10", "--nll_images=100", "--probe_examples=1000",
                   module="aejax.analyze", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_aejax(stopped, f"--out={tmp_path / 'out'}", module="aejax.compare", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [l for l in proc.stdout.splitlines() if l.startswith("|")][2:]
  assert len(rows) == 2 and all("| 2 " in r for r in rows), proc.stdout  # Seeds folded.


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sweep_partitions_by_structure_into_groups(data_dir, tmp_path):
  root = str(tmp_path / "root")
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={root}",
                   f"--data_dir={data_dir}", "--vectorize", "--config.num_epochs=1",
                   *SMALL[:3], SMALL[-1], "--sweep=model.latents=8,16", "--sweep=seed=0,1,2", module="aejax.sweep",
                   timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "2 groups of sizes 3 3" in proc.stderr
  assert len(os.listdir(root)) == 6
  for name in os.listdir(root):
    config = rundir.read_config(os.path.join(root, name))
    assert name == f"mlp_ae-model.latents={config['model']['latents']}-seed={config['seed']}"
    assert rundir.is_finished(os.path.join(root, name), 1)


def test_max_group_size_caps_the_groups():
  from absl import flags
  from aejax import sweep

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  config_file = os.path.join(REPO, "experiments/mlp_ae.py")
  base = sweep.load_config(config_file, [])
  runs = sweep.plan(config_file, "/tmp/unused", ["model.latents=8,16", "seed=0,1,2"], [], base)
  got = [[(r.config.model.latents, r.config.seed) for r in g] for g in sweep.groups(runs, 2)]
  assert got == [[(8, 0), (8, 1)], [(8, 2)], [(16, 0), (16, 1)], [(16, 2)]]
  assert [len(g) for g in sweep.groups(runs, None)] == [3, 3]


def test_an_unrolled_group_on_several_devices_is_one_line_exit_2(data_dir, tmp_path):
  """config.group_runs='unroll' is tested on one device only (tests/test_vectorize.py)."""
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={tmp_path / 'root'}",
                   f"--data_dir={data_dir}", "--vectorize", "--sweep=seed=0,1",
                   "--config.group_runs=unroll", module="aejax.sweep", timeout=600,
                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      "aejax: error: config.group_runs='unroll' trains a group on one device, not 2; use "
      "config.group_runs='vmap', which spreads a group over the mesh"), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags,expected", [
    (["--parallel=2"], "--vectorize trains each group in this process"),
    (["--max_group_size=0"], "--max_group_size=0 must be >= 1"),
    (["--config.model.hidden=(20000,20000)", "--sweep=seed=" + ",".join(map(str, range(16)))],
     "a vectorised group of 16 runs needs"),
])
def test_bad_vectorize_input_is_one_line_exit_2(flags, expected, data_dir, tmp_path):
  sweep_flags = [] if any(f.startswith("--sweep") for f in flags) else ["--sweep=seed=0,1"]
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={tmp_path / 'root'}",
                   f"--data_dir={data_dir}", "--vectorize", *sweep_flags, *flags,
                   module="aejax.sweep", timeout=600)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("aejax: error: ") and expected in lines[-1], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  if "16 runs" in expected:
    assert "--max_group_size=" in lines[-1]


def test_eight_devices_give_the_one_device_parameters(data_dir, tmp_path):
  """6 runs in groups of 4 (the run axis split over 4 CPU devices) and 2 (each run's batch
  split over them) against the same groups on one device."""
  from conftest import assert_same_training

  roots = {}
  for devices in (1, 4):
    roots[devices] = str(tmp_path / f"d{devices}")
    proc = run_aejax(*_args(roots[devices], data_dir, "--sweep=seed=" + ",".join(
        map(str, range(6))), "--max_group_size=4", epochs=1),
                     module="aejax.sweep", timeout=900,
                     env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 groups of sizes 4 2" in proc.stderr
  assert "group of 4 runs, the run axis split over 4 device(s)" in proc.stderr
  assert "group of 2 runs, each run data-parallel over 4 device(s)" in proc.stderr
  names = sorted(os.listdir(roots[1]))
  assert names == sorted(os.listdir(roots[4])) and len(names) == 6
  for name in names:
    assert_same_training(_final_params(os.path.join(roots[4], name)),
                         _final_params(os.path.join(roots[1], name)))
