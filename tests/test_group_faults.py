"""A run is the unit of a vectorised group: every fault is a run's.

A run that diverges stops alone, a group resumes from the step all its runs have, and a group
that fails holds nothing afterwards.
"""

import json
import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, run_aejax, saved_state
from aejax import cli
from aejax import configs
from aejax import train
from aejax.errors import Diverged, StorageError
from aejax.run import checkpoint
from aejax.run import lock
from aejax.run import rundir

# Digits 0 and 1 only (12,665 train images): 20 steps per epoch of batch 632.
SMALL = ["--config.batch_size=632", "--config.eval_batch_size=1000",
         "--config.model.hidden=(16,)", "--config.model.latents=4", "--config.steps_per_call=5",
         "--config.input.train_labels=(0,1)"]
SKIP = ("time", "examples_per_sec")  # Wall-clock fields differ between any two runs.


def _small_config(seed=0, learning_rate=1e-3, num_epochs=2):
  config = configs.load_experiment(os.path.join(REPO, "experiments", "vae.py"))
  config.seed, config.learning_rate, config.num_epochs = seed, learning_rate, num_epochs
  config.batch_size, config.eval_batch_size, config.steps_per_call = 632, 1000, 5
  config.model.hidden, config.model.latents = (16,), 4
  config.input.train_labels = (0, 1)
  return config


def _params(workdir):
  return [np.asarray(x) for x in jax.tree.leaves(saved_state(workdir)[0]["params"])]


def _lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in SKIP} for line in f]


def _lines_with_time(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_bitwise(a, b):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)


def test_a_diverging_run_stops_alone_and_the_sweep_names_it(data_dir, tmp_path):
  """Three learning rates of SGD, one of which (1000) blows up in the first epoch: the other
  two train to the end with the parameters they get alone; exit 4 names the diverged run, and
  a re-run trains nothing and reports it again."""
  common = ["--config=experiments/vae.py", f"--data_dir={data_dir}", "--config.num_epochs=2",
            "--config.opt.name=sgd", *SMALL]
  root = str(tmp_path / "group")
  args = [*common, f"--workdir={root}", "--vectorize",
          "--sweep=learning_rate=0.001,1000.0,0.003"]
  proc = run_aejax(*args, module="aejax.sweep", timeout=900)
  assert proc.returncode == 4, proc.stderr[-3000:]
  bad = os.path.join(root, "vae-learning_rate=1000.0")
  summary = [l for l in proc.stderr.splitlines() if "DIVERGED" in l]
  assert len(summary) == 1 and bad in summary[0] and "non-finite loss at step" in summary[0]
  assert "1 of 3 runs diverged" in proc.stderr
  record = rundir.divergence(bad)
  assert record is not None and 0 <= record["step"] < 20, record  # In epoch 1.
  assert rundir.checkpoint_steps(bad) == []  # It diverged before its first checkpoint.
  for lr in ("0.001", "0.003"):
    healthy = os.path.join(root, f"vae-learning_rate={lr}")
    assert rundir.is_finished(healthy, 2) and rundir.divergence(healthy) is None
    alone = str(tmp_path / f"alone{lr}")
    solo = run_aejax(*common, f"--workdir={alone}", f"--config.learning_rate={lr}", timeout=600)
    assert solo.returncode == 0, solo.stderr[-3000:]
    for a, b in zip(_params(healthy), _params(alone), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [(l["step"], l["split"]) for l in _lines(healthy)] == [
        (l["step"], l["split"]) for l in _lines(alone)]

  again = run_aejax(*args, module="aejax.sweep", timeout=600)
  assert again.returncode == 4, again.stderr[-3000:]
  assert "Training a vectorised group" not in again.stderr
  assert "2 finished (skipped), 1 diverged (reported, not retrained), 0 to run" in again.stderr
  assert bad in [l for l in again.stderr.splitlines() if "DIVERGED" in l][0]


def test_a_group_resumes_from_the_step_all_its_runs_saved(data_dir, tmp_path, monkeypatch):
  """The second run's save of epoch 2 fails after the first run's went through: the runs'
  newest checkpoints differ (40 and 20). The same call resumes the group from step 20, setting
  run 0's step 40 aside, and ends bitwise where the uninterrupted group does."""
  cfgs = lambda: [_small_config(seed=s, num_epochs=3) for s in (0, 1)]
  straight = [str(tmp_path / f"straight{i}") for i in range(2)]
  train.train_group(cfgs(), straight, data_dir=data_dir)

  broken = [str(tmp_path / f"broken{i}") for i in range(2)]
  save = checkpoint.save

  def failing_save(mngr, step, state, meta):
    if step == 40 and str(mngr.directory).startswith(broken[1]):
      raise StorageError("injected: no space left while saving the second run's step 40")
    return save(mngr, step, state, meta)

  monkeypatch.setattr(checkpoint, "save", failing_save)
  with pytest.raises(StorageError, match="injected"):
    train.train_group(cfgs(), broken, data_dir=data_dir)
  monkeypatch.undo()
  assert [rundir.checkpoint_steps(w) for w in broken] == [[20, 40], [20]]
  assert not lock._held  # Every lock was released on the way out.

  train.train_group(cfgs(), broken, data_dir=data_dir)
  assert os.path.isdir(os.path.join(broken[0], "checkpoints", "40.set-aside"))
  for b, s in zip(broken, straight):
    assert rundir.checkpoint_steps(b) == rundir.checkpoint_steps(s) == [20, 40, 60]
    _assert_bitwise(_params(b), _params(s))
    assert _lines(b) == _lines(s)


def test_a_sweep_with_one_more_seed_resumes_the_old_runs_and_trains_the_new_one_apart(
    data_dir, tmp_path):
  """Seeds 0 and 1 trained 1 epoch; the sweep of seeds 0-2 for 2 epochs resumes them as a group
  of 2 from their own checkpoints at step 20 and trains seed 2 in a group of its own from step 0:
  nothing is set aside and epoch 1's lines stay as first written (their times too). Every run
  ends as in the same sweep trained straight (one group of 3), within the rtol 1e-5, atol 1e-6
  of a run trained in a group against alone. Catches: groups formed by hparams.group_key alone
  (one group of 3 resuming from no common step: both old checkpoints set aside, epoch 1 trained
  again, its lines rewritten)."""
  common = ["--config=experiments/vae.py", f"--data_dir={data_dir}", "--vectorize", *SMALL]
  grown, straight = str(tmp_path / "grown"), str(tmp_path / "straight")
  first = run_aejax(*common, f"--workdir={grown}", "--config.num_epochs=1", "--sweep=seed=0,1",
                    module="aejax.sweep", timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  old = {s: _lines_with_time(os.path.join(grown, f"vae-seed={s}")) for s in (0, 1)}
  logs = {}
  for root, sizes in ((grown, "2 groups of sizes 2 1"), (straight, "1 groups of sizes 3")):
    proc = run_aejax(*common, f"--workdir={root}", "--config.num_epochs=2",
                     "--sweep=seed=0,1,2", module="aejax.sweep", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sizes in proc.stderr, proc.stderr[-3000:]
    logs[root] = proc.stderr
  assert "Resuming from the checkpoint at step 20" in logs[grown]
  assert "set aside" not in logs[grown], logs[grown][-3000:]
  for s in (0, 1):
    assert _lines_with_time(os.path.join(grown, f"vae-seed={s}"))[:2] == old[s]
  for name in sorted(os.listdir(straight)):
    a, b = os.path.join(grown, name), os.path.join(straight, name)
    assert rundir.checkpoint_steps(a) == rundir.checkpoint_steps(b) == [20, 40]
    for x, y in zip(_params(a), _params(b), strict=True):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert [(l["step"], l["split"]) for l in _lines(a)] == [
        (l["step"], l["split"]) for l in _lines(b)]
    for la, lb in zip(_lines(a), _lines(b)):
      np.testing.assert_allclose([la[k] for k in sorted(la) if k not in ("split",)],
                                 [lb[k] for k in sorted(lb) if k not in ("split",)], rtol=1e-5)


def _sweep_in_process(data_dir, tmp_path, monkeypatch, num_epochs, specs):
  """(aejax.sweep, the runs of its plan of `specs` in tmp_path/root), its flags set as the
  command's would be, to call its functions in this process."""
  from aejax import sweep  # Defines aejax.main's flags: only in the tests that need them.

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  root = str(tmp_path / "root")
  for name, value in (("data_dir", data_dir), ("workdir", root)):
    # On the flag, not FLAGS: undoing setattr(FLAGS, ...) left the flag undefined for the next
    # test that sets it.
    monkeypatch.setattr(flags.FLAGS[name], "value", value)
  config_file = os.path.join(REPO, "experiments", "vae.py")
  passed = ["--config.batch_size=632", "--config.eval_batch_size=1000",
            "--config.model.hidden=(16,)", "--config.input.train_labels=(0,1)",
            f"--config.num_epochs={num_epochs}"]
  return sweep, sweep.plan(config_file, root, specs, passed,
                           sweep.load_config(config_file, passed))


def test_a_failed_group_holds_no_lock_while_the_sweep_trains_the_next(data_dir, tmp_path,
                                                                      monkeypatch):
  """Every run of the first group diverges in epoch 2 (a NaN injected into its step), after its
  epoch-1 checkpoint. When the sweep starts the second group, the first group's locks are free:
  aejax.analyze runs on one of its runs meanwhile. The second group trains to the end."""
  sweep, runs = _sweep_in_process(data_dir, tmp_path, monkeypatch, num_epochs=2,
                                  specs=["model.latents=4,8", "seed=0,1"])
  real_step, real_train_group = train.train_step, train.train_group

  def poisoned_step(state, x, rng, **kwargs):  # The latents=4 group: NaN from step 23 on.
    new_state, metrics = real_step(state, x, rng, **kwargs)
    if kwargs["config"].model.latents == 4:
      metrics["loss"] = jnp.where(state.step >= 23, jnp.nan, metrics["loss"])
    return new_state, metrics

  analyzed = []

  def train_group(cfgs, workdirs, **kwargs):
    if cfgs[0].model.latents == 8:  # The second group: the first one's runs must be free.
      assert not lock._held
      failed_run = runs[0].workdir
      proc = run_aejax(f"--workdir={failed_run}", f"--data_dir={data_dir}", "--k=5",
                       "--nll_images=100", "--probe_examples=500", module="aejax.analyze",
                       timeout=600)
      analyzed.append(proc)
    return real_train_group(cfgs, workdirs, **kwargs)

  monkeypatch.setattr(train, "train_step", poisoned_step)
  monkeypatch.setattr(train, "train_group", train_group)
  status = sweep.sweep_vectorized(runs, list(runs), [])
  assert status == Diverged.exit_code
  assert len(analyzed) == 1 and analyzed[0].returncode == 0, analyzed[0].stderr[-3000:]
  for run in runs:
    if run.config.model.latents == 4:
      assert rundir.divergence(run.workdir)["step"] == 23
      assert rundir.checkpoint_steps(run.workdir) == [20]  # The last good one, kept.
    else:
      assert rundir.is_finished(run.workdir, 2)
  assert not lock._held


def test_a_run_sharded_group_resumes_each_run_on_its_own_device(data_dir):
  """4 runs on 4 CPU devices: each run's checkpoint is restored onto (and saved from) the one
  device that holds it, never as a copy on every device; the resume is bitwise."""
  import subprocess
  import sys

  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "group_resume_shardings.py"),
                         data_dir], cwd=REPO, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "RUN-SHARDED RESUME" in proc.stdout


def test_every_lock_is_released_when_closing_a_writer_fails(data_dir, tmp_path, monkeypatch):
  """TensorBoard's last flush failing (a full disk) is the run's error, exit 5, and the
  checkpoint managers are closed and the locks released all the same (mutation: closing the
  writers outside the try leaves both runs locked)."""
  from aejax.run import metrics as metrics_lib

  def failing_close(self):
    raise StorageError(f"could not write {self._tb_dir} (injected)")

  monkeypatch.setattr(metrics_lib.MetricWriter, "close", failing_close)
  workdirs = [str(tmp_path / f"w{i}") for i in range(2)]
  with pytest.raises(StorageError, match="injected"):
    train.train_group([_small_config(seed=s, num_epochs=1) for s in (0, 1)], workdirs,
                      data_dir=data_dir)
  assert not lock._held
  assert [rundir.checkpoint_steps(w) for w in workdirs] == [[20], [20]]


def test_managers_already_built_are_closed_when_a_later_one_fails(tmp_path, monkeypatch):
  """The second run's checkpoint manager cannot be built (a permission error on its folder):
  the first run's manager, already built, is closed and both locks released (catches:
  GroupDirs.open building the managers in one expression, which leaves the first unclosed)."""
  import errno

  from aejax.run.group_dirs import GroupDirs

  real_manager, built, closed = checkpoint.manager, [], []

  def manager(directory, max_to_keep, writer=True):
    if built:
      raise PermissionError(errno.EACCES, "injected", directory)
    mngr = real_manager(directory, max_to_keep, writer)
    real_close = mngr.close
    mngr.close = lambda: (closed.append(directory), real_close())[1]
    built.append(directory)
    return mngr

  monkeypatch.setattr(checkpoint, "manager", manager)
  workdirs = [str(tmp_path / f"w{i}") for i in range(2)]
  with pytest.raises(PermissionError, match="injected"):
    GroupDirs.open(workdirs, [_small_config(seed=s) for s in (0, 1)], device_count=1)
  assert built == closed == [os.path.join(workdirs[0], rundir.CHECKPOINTS)]
  assert not lock._held


def test_a_group_that_fails_late_is_named_failed_and_the_sweep_trains_the_next(
    data_dir, tmp_path, monkeypatch, caplog):
  """The first group's evaluation runs out of device memory after its epoch (XLA's error,
  injected): its run is named FAILED with that error on one line, its checkpoint of the epoch is
  kept, every lock is released, the second group trains to the end, and the sweep's status is 1
  with a line saying how many runs failed. Catches: sweep_vectorized letting the error through
  (a traceback, the second group never trained)."""
  sweep, runs = _sweep_in_process(data_dir, tmp_path, monkeypatch, num_epochs=1,
                                  specs=["model.latents=4,8"])
  oom = "RESOURCE_EXHAUSTED: Out of memory allocating 30822912384 bytes."
  real_build_runner = train.build_runner

  def build_runner(g, data):
    runner = real_build_runner(g, data)
    if g.configs[0].model.latents == 4:
      def evaluate(params, run):
        raise jax.errors.JaxRuntimeError(f"{oom}\nBuffer assignment: ...")
      runner.evaluate = evaluate
    return runner

  monkeypatch.setattr(train, "build_runner", build_runner)
  status = sweep.sweep_vectorized(runs, list(runs), [])
  assert status == 1
  failed, trained = runs[0].workdir, runs[1].workdir
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("FAILED")]
  # The one line a run alone would print for it: the error and what to lower.
  assert len(lines) == 1 and lines[0].startswith(f"FAILED {failed} ") and oom in lines[0] and (
      lines[0].endswith(cli.TRAIN_MEMORY_FIX)), lines
  assert "1 of 2 runs failed" in caplog.text
  assert rundir.checkpoint_steps(failed) == [20] and not rundir.is_finished(failed, 1)
  assert rundir.is_finished(trained, 1)
  assert not lock._held
