"""Runs survive preemption, divergence, damaged checkpoints, config drift and bad input.

Time: runs killed, interrupted and resumed mid-epoch (a SIGTERM must land inside an epoch of 468
steps, a kill -9 inside a 15 MB save), each compared with an uninterrupted run, and 37 commands
refused at start-up.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.run import checkpoint
from aejax.run import lock
from aejax.run import rundir
from aejax import configs
from aejax import epochs
from aejax import train
from aejax.errors import Diverged
from conftest import REPO, run_aejax, saved_state

TINY_AE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(64,)",
           "--config.steps_per_call=20"]


def _tree(workdir):
  """Every file under workdir, with its size: to show that nothing was deleted. The lock file is
  left out: it names whichever process holds the workdir now."""
  return {os.path.join(d, f): os.path.getsize(os.path.join(d, f))
          for d, _, files in os.walk(workdir) for f in files if f != lock.FILENAME}


def _params(workdir):
  return saved_state(workdir)[0]["params"]


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _error_line(proc):
  lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  return lines[0]


def test_sigterm_mid_epoch_then_resume_is_bitwise_equal_to_an_uninterrupted_run(data_dir,
                                                                                   tmp_path):
  flags = [*TINY_AE, f"--data_dir={data_dir}", "--config.num_epochs=2"]
  straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
  assert run_aejax(f"--workdir={straight}", *flags).returncode == 0

  proc = subprocess.Popen([sys.executable, "-m", "aejax.main", f"--workdir={interrupted}", *flags],
                          cwd=REPO, stderr=subprocess.PIPE, text=True)
  for line in proc.stderr:  # SIGTERM as soon as the first epoch starts.
    if "Compiled" in line:
      proc.send_signal(signal.SIGTERM)
      break
  rest = proc.stderr.read()
  assert proc.wait(timeout=300) == 3, rest[-3000:]
  assert "aejax: stopped by SIGTERM at step" in rest and "re-run the same command" in rest
  mngr = checkpoint.manager(os.path.join(interrupted, "checkpoints"), max_to_keep=3)
  stopped_at = mngr.latest_step()
  assert 0 < stopped_at < 468, stopped_at  # Mid-epoch: a multiple of steps_per_call.
  assert stopped_at % 20 == 0

  resumed = run_aejax(f"--workdir={interrupted}", *flags)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resuming from the checkpoint at step {stopped_at}" in resumed.stderr
  jax.tree.map(np.testing.assert_array_equal, _params(interrupted), _params(straight))
  drop = ("examples_per_sec", "time")
  strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]
  assert strip(_rows(interrupted)) == strip(_rows(straight))


# 12 steps per epoch; a checkpoint is 15 MB (params and Adam moments), long enough to write for
# the test to see its temporary directory.
KILLED_SAVE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(512,512)",
               "--config.batch_size=1000", "--config.input.train_labels=(0,1)",
               "--config.num_epochs=4"]


def _temp_dirs(ckpt_dir, step=None):
  """The names of orbax's temporary directories (unfinished saves) in ckpt_dir, of `step` if
  given."""
  names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
  return [n for n in names if ".orbax-checkpoint-tmp" in n and (
      step is None or n.startswith(f"{step}."))]


def _kill_while_saving(flags, ckpt_dir, step):
  """Starts a run and SIGKILLs it once the temporary directory of its save at `step` appears;
  returns what is left of that save (none if the save finished before the kill landed)."""
  proc = subprocess.Popen([sys.executable, "-m", "aejax.main", *flags], cwd=REPO,
                          stderr=subprocess.DEVNULL)
  try:
    while proc.poll() is None and not _temp_dirs(ckpt_dir, step):
      time.sleep(0.002)
  finally:
    proc.kill()
    proc.wait(timeout=60)
  return _temp_dirs(ckpt_dir, step)


def test_a_save_killed_midway_leaves_a_temp_dir_that_the_rerun_removes_at_any_step(data_dir,
                                                                                tmp_path):
  """Mutation: checkpoint.manager without cleanup_tmp_directories leaves 24.orbax-checkpoint-tmp
  behind, as the re-run, saving every 3 epochs, never writes step 24 again."""
  straight = str(tmp_path / "straight")
  assert run_aejax(*KILLED_SAVE, f"--workdir={straight}", f"--data_dir={data_dir}"
                   ).returncode == 0
  for attempt in range(3):  # A save can finish before the kill lands; then try again.
    workdir = str(tmp_path / f"killed{attempt}")
    flags = [*KILLED_SAVE, f"--workdir={workdir}", f"--data_dir={data_dir}"]
    if left := _kill_while_saving(flags, os.path.join(workdir, "checkpoints"), 24):
      break
  else:
    pytest.fail("each of 3 saves of step 24 finished before SIGKILL reached its run")

  proc = run_aejax(*flags, "--config.checkpoint.every_epochs=3")  # Saves 36 and 48, not 24.
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resuming from the checkpoint at step 12" in proc.stderr, left
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert _temp_dirs(ckpt_dir) == [] and sorted(os.listdir(ckpt_dir), key=int) == ["12", "36", "48"]
  jax.tree.map(np.testing.assert_array_equal, saved_state(workdir, 48)[0],
               saved_state(straight, 48)[0])


def test_a_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
    mnist, data_dir, tmp_path, monkeypatch):
  real_step = train.train_step

  def poisoned_step(state, x, rng, **kwargs):  # A NaN loss at step 500, in epoch 2.
    new_state, metrics = real_step(state, x, rng, **kwargs)
    metrics["loss"] = jnp.where(state.step == 500, jnp.nan, metrics["loss"])
    return new_state, metrics

  monkeypatch.setattr(train, "train_step", poisoned_step)
  # The order in which saves and waits return: the stop must wait for the in-flight save. (A
  # save first waits for the one before it, so a wait also precedes each save.)
  events = []
  for name in ("save", "wait"):
    real = getattr(checkpoint, name)
    monkeypatch.setattr(checkpoint, name, lambda *a, _real=real, _name=name, **k: (
        _real(*a, **k), events.append(_name))[0])
  config = configs.base()
  config.model.hidden, config.num_epochs = (32,), 3
  workdir = str(tmp_path / "nan")
  with pytest.raises(Diverged, match=r"non-finite loss at step 500 \(epoch 2\); the last good "
                     r"checkpoint is step 468 in .*, kept intact"):
    train.train_and_evaluate(config, workdir, data_dir=data_dir)
  assert events.count("save") == 1 and events[events.index("save") + 1] == "wait", events
  mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"), max_to_keep=3)
  assert mngr.all_steps() == [468]
  state, meta = saved_state(workdir, 468)
  assert int(state["step"]) == 468 and meta["epoch"] == 1
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_a_truncated_checkpoint_is_an_error_unless_fallback_is_allowed(data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  flags = [*TINY_AE, f"--workdir={workdir}", f"--data_dir={data_dir}"]
  assert run_aejax(*flags, "--config.num_epochs=2").returncode == 0
  data_files = os.path.join(workdir, "checkpoints", "936", "state", "ocdbt.process_0", "d")
  biggest = max((os.path.join(data_files, f) for f in os.listdir(data_files)),
                key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(100)
  before = _tree(workdir)

  proc = run_aejax(*flags, "--config.num_epochs=3")
  assert proc.returncode == 2
  line = _error_line(proc)
  assert "the checkpoint at step 936" in line and "--allow_fallback" in line and "[468]" in line
  assert _tree(workdir) == before  # Nothing deleted, nothing written.

  proc = run_aejax(*flags, "--config.num_epochs=3", "--allow_fallback")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resuming from the checkpoint at step 468" in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "936.unreadable"))  # Set aside.
  assert [r["epoch"] for r in _rows(workdir) if r["split"] == "test"] == [1, 2, 3]


def test_resuming_with_another_config_is_an_error_and_force_new_uses_a_new_workdir(
    data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  flags = [*TINY_AE, f"--workdir={workdir}", f"--data_dir={data_dir}", "--config.num_epochs=1"]
  assert run_aejax(*flags).returncode == 0
  before = _tree(workdir)

  proc = run_aejax(*flags, "--config.model.latents=16", "--config.learning_rate=0.01")
  assert proc.returncode == 2
  line = _error_line(proc)
  assert "learning_rate: 0.001 -> 0.01" in line and "model.latents: 32 -> 16" in line
  assert "--force_new" in line
  assert _tree(workdir) == before

  # A resumable field (more epochs) is not drift.
  assert run_aejax(*flags[:-1], "--config.num_epochs=2").returncode == 0

  proc = run_aejax(*flags, "--config.model.latents=16", "--force_new")
  assert proc.returncode == 0, proc.stderr[-3000:]
  new = workdir + "-2"
  assert json.load(open(os.path.join(new, "config.json")))["model"]["latents"] == 16
  assert json.load(open(os.path.join(workdir, "config.json")))["model"]["latents"] == 32
  assert os.listdir(os.path.join(workdir, "checkpoints")) != []


BAD_INPUTS = [
    (["--config.learning_rate=-0.1"], "config.learning_rate=-0.1 must be > 0"),
    (["--config.model.latents=0"], "config.model.latents=0 must be >= 1"),
    (["--config.model.name=gan"], "unknown config.model.name='gan'"),
    (["--config.loss=hinge"], "config.loss='hinge' does not fit"),
    (["--config.batch_size=70000"], "exceeds the 60000 training images"),
    (["--config.opt.name=adamax"], "unknown config.opt.name='adamax'"),
    (["--config.input.binarize=maybe"], "unknown config.input.binarize='maybe'"),
    (["--config.num_epochs=0"], "config.num_epochs=0 must be >= 1"),
    (["--config.eval_batch_size=0"], "config.eval_batch_size=0 must be >= 1"),
    (["--config.model.activation=swish2"], "unknown config.model.activation='swish2'"),
    (["--config.parallel=tpu"], "unknown config.parallel='tpu'"),
    (["--config.model.hidden=(0,)"], "must be positive layer widths"),
    (["--config.opt.b1=1.5"], "config.opt.b1=1.5 must be in [0, 1)"),
    (["--config.steps_per_call=-1"], "config.steps_per_call=-1 must be >= 0"),
    (["--config.model.latnets=3"], "unknown config field 'latnets'"),
    (["--config.num_epochs=abc"], "flag --config.num_epochs=abc"),
    (["--config=experiments/missing.py"], "cannot load --config=experiments/missing.py"),
    (["stray"], "unexpected arguments ['stray']"),
    (["--workdir=FILE"], "is a file; pass a directory"),
    (["--data_dir=EMPTY", "--nodownload"], "is not prepared in"),
    (["--config.input.train_split=train[5:5]"], "holds no examples of mnist"),
    (["--config.input.test_split=tset"], "config.input.test_split='tset' is no split of mnist"),
    (["--config=experiments/vae.py", "--config.model.decoder_dist=gausian"],
     "unknown config.model.decoder_dist='gausian'; use one of ('bernoulli', 'gaussian', "
     "'logistic')"),
    (["--data_dir=EMPTY", "--manual_dir=/nonexistent"], "--manual_dir=/nonexistent is not a "
     "directory"),
    (["--workdir="], "--workdir is empty"),
    (["--workdir=/dev/null/x"], "--workdir=/dev/null/x cannot be created"),
    (["--workdir=/proc/x"], "--workdir=/proc/x cannot be created"),
    (["--config.input.corruption=gaussian", "--config.input.noise_level=-1"],
     "config.input.noise_level=-1.0 must be >= 0"),
    (["--config.objective.sparsity_target=1.5"], "config.objective.sparsity_target=1.5 must be "
     "in (0, 1)"),
    (["--config.opt.momentum=1.0"], "config.opt.momentum=1.0 must be in [0, 1)"),
    # Checked with the other fields, before the dataset is looked for (catches: the view's sizes
    # read only where the data is loaded, which names the missing dataset instead).
    (["--data_dir=EMPTY", "--nodownload", "--config.input.crop=-3"],
     "config.input.crop=(-3,) is no image size"),
]


@pytest.mark.parametrize("flags,expected", BAD_INPUTS, ids=[e for _, e in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(flags, expected, data_dir, tmp_path):
  (tmp_path / "FILE").write_text("not a directory")
  paths = {"FILE": str(tmp_path / "FILE"), "EMPTY": str(tmp_path / "empty")}
  flags = [f.replace(k, v) if f.startswith(("--workdir=", "--data_dir=")) else f
           for f in flags for k, v in [next(((k, v) for k, v in paths.items() if k in f),
                                            ("", ""))]]
  base = {"--config": "--config=experiments/mlp_ae.py", "--workdir": f"--workdir={tmp_path / 'w'}",
          "--data_dir": f"--data_dir={data_dir}"}
  for flag in flags:
    base.pop(flag.split("=")[0], None)
  args = [*base.values(), *flags]
  proc = run_aejax(*args, timeout=120)
  assert proc.returncode == 2, (args, proc.stderr[-3000:])
  assert expected in _error_line(proc), (expected, _error_line(proc))


@pytest.mark.parametrize("source,expected", [
    ("from aejax import configs\ndef get_config(:\n  return configs.base()\n",
     ":2: SyntaxError: invalid syntax"),
    ("from aejax import configs\ndef get_config():\n  c = configs.base()\n  return 1 / 0\n",
     ":4: ZeroDivisionError: division by zero"),
], ids=["syntax_error", "exception_in_get_config"])
def test_an_experiment_file_that_does_not_load_is_one_line_naming_file_and_line(
    source, expected, tmp_path):
  path = tmp_path / "broken.py"
  path.write_text(source)
  proc = run_aejax(f"--config={path}", f"--workdir={tmp_path / 'w'}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert f"{path}{expected}" in _error_line(proc)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("assignment,expected", [
    ("c.objective.mmd_wieght = 10.0", "config.objective.mmd_wieght is no field of the base "
     "config (did you mean 'objective.mmd_weight'?)"),
    ("c.model.extra = ml_collections.ConfigDict({'depht': 2})", "config.model.extra.depht is no "
     "field of the base config"),
], ids=["misspelt_field", "new_section"])
def test_a_field_the_base_config_lacks_in_an_experiment_file_is_exit_2_with_did_you_mean(
    assignment, expected, tmp_path):
  """An experiment file is held to the base config's fields, as --config.<field> is; catches: a
  load_experiment that returns get_config()'s dict unchecked (the run trains without the
  field, and config.json stores the misspelling)."""
  path = tmp_path / "misspelt.py"
  path.write_text("import ml_collections\nfrom aejax import configs\ndef get_config():\n"
                  f"  c = configs.mlp_vae()\n  {assignment}\n  return c\n")
  proc = run_aejax(f"--config={path}", f"--workdir={tmp_path / 'w'}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert f"{path}: {expected}" in _error_line(proc), _error_line(proc)
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists()


def test_every_experiment_file_holds_only_base_config_fields():
  """Each file of experiments/ loads through the check above (a field it adds would fail it)."""
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    configs.load_experiment(path)


def test_kl_warmup_continues_across_a_resume(data_dir, tmp_path):
  config = configs.mlp_vae(latents=2)
  config.model.hidden, config.num_epochs = (32,), 1
  config.objective.kl_warmup_steps = 1000  # 468 steps per epoch: the ramp spans the resume.
  workdir = str(tmp_path / "warmup")
  train.train_and_evaluate(config, workdir, data_dir=data_dir)
  config.num_epochs = 2  # Resumes after epoch 1.
  train.train_and_evaluate(config, workdir, data_dir=data_dir)
  kl_weight = {r["epoch"]: r["kl_weight"] for r in _rows(workdir) if r["split"] == "train"}
  # The mean of step / 1000 over each epoch's steps: (0 + 467) / 2000, then (468 + 935) / 2000.
  np.testing.assert_allclose([kl_weight[1], kl_weight[2]], [0.2335, 0.7015], rtol=1e-5)


def _ten_step_config():
  config = configs.base()
  config.model.hidden, config.batch_size, config.num_epochs = (32,), 6000, 2  # 10 steps an epoch.
  return config


@pytest.fixture(scope="module")
def ten_step_straight(data_dir, tmp_path_factory):
  """An uninterrupted run of _ten_step_config: what every interrupted one must end as."""
  workdir = str(tmp_path_factory.mktemp("ten_step") / "straight")
  train.train_and_evaluate(_ten_step_config(), workdir, data_dir=data_dir)
  return workdir


def _strip(rows):
  return [{k: v for k, v in r.items() if k not in ("examples_per_sec", "time")} for r in rows]


def _before_each_evaluation(before):
  """A replacement for epochs.make_evaluate whose evaluations call `before()` first."""
  make_evaluate = epochs.make_evaluate

  def wrapped_make_evaluate(*args, **kwargs):
    lowered = make_evaluate(*args, **kwargs)

    class Wrapped:  # What the loop calls: make_evaluate(...).lower(...).compile()(...).
      def lower(self, *a):
        compiled = lowered.lower(*a).compile()
        return types.SimpleNamespace(compile=lambda: lambda *b: before() or compiled(*b))
    return Wrapped()
  return wrapped_make_evaluate


def test_a_sigterm_in_an_epochs_last_chunk_checkpoints_before_the_evaluation(
    data_dir, tmp_path, monkeypatch, ten_step_straight):
  from aejax.errors import Preempted
  from aejax.run import metrics as metrics_lib

  config = _ten_step_config()
  interrupted = str(tmp_path / "interrupted")
  events = []
  save, write = checkpoint.save, metrics_lib.MetricWriter.write

  def signalling_write(self, step, epoch, split, values):
    if split == "train":  # The epoch's chunks are done: as if the signal came in the last one.
      os.kill(os.getpid(), signal.SIGTERM)
    return write(self, step, epoch, split, values)

  monkeypatch.setattr(checkpoint, "save", lambda mngr, step, *a: events.append(("save", step))
                      or save(mngr, step, *a))
  monkeypatch.setattr(epochs, "make_evaluate",
                      _before_each_evaluation(lambda: events.append("evaluate")))
  monkeypatch.setattr(metrics_lib.MetricWriter, "write", signalling_write)
  with pytest.raises(Preempted, match="at step 10 "):
    train.train_and_evaluate(config, interrupted, data_dir=data_dir)
  # The checkpoint is asked for before the evaluation starts, once.
  assert events == [("save", 10), "evaluate"], events
  monkeypatch.undo()

  train.train_and_evaluate(config, interrupted, data_dir=data_dir)
  jax.tree.map(np.testing.assert_array_equal, _params(interrupted), _params(ten_step_straight))
  assert _strip(_rows(interrupted)) == _strip(_rows(ten_step_straight))


def train_with_a_hanging_evaluation(workdir, data_dir, hang_at):
  """Trains _ten_step_config in `workdir` in this process; its `hang_at`-th evaluation prints
  EVALUATING and never returns (a k = 5000 NLL outlasting a grace period), for the test to
  SIGKILL it there. Started by _kill_in_evaluation, in a process of its own."""
  calls = []

  def hang():
    calls.append(None)
    if len(calls) == hang_at:
      print("EVALUATING", flush=True)
      time.sleep(3600)

  epochs.make_evaluate = _before_each_evaluation(hang)
  train.train_and_evaluate(_ten_step_config(), workdir, data_dir=data_dir)


def _kill_in_evaluation(workdir, data_dir, hang_at):
  """Runs train_with_a_hanging_evaluation in a process of its own and SIGKILLs it once its
  `hang_at`-th evaluation has started; returns the checkpoint steps on disk at that moment."""
  call = (f"import test_reliability; test_reliability.train_with_a_hanging_evaluation("
          f"{workdir!r}, {data_dir!r}, {hang_at})")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
  proc = subprocess.Popen([sys.executable, "-c", call], cwd=os.path.join(REPO, "tests"), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if "EVALUATING" in line:
        break
    steps = rundir.checkpoint_steps(workdir)
  finally:
    proc.kill()
    _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
  return steps


def test_a_kill_during_an_evaluation_loses_no_epoch_and_the_rerun_only_evaluates(
    data_dir, tmp_path, ten_step_straight):
  """SIGKILL during epoch 1's evaluation, then (resumed) during epoch 2's, the final one: each
  time the epoch's checkpoint was on disk before its evaluation started. The first re-run
  evaluates epoch 1 again and trains epoch 2; the second, whose checkpoint holds both epochs,
  only evaluates: the run is then finished, with the lines and parameters of the uninterrupted
  run. Catches: end_epoch saving after the evaluation (nothing on disk at the kill: step 10 and
  then 20 retrained), and a resume that skips a missing test line (the final one never written:
  rundir.is_finished stays false, and a sweep reports the run FAILED at every re-run)."""
  workdir = str(tmp_path / "killed")
  assert _kill_in_evaluation(workdir, data_dir, hang_at=1) == [10]
  assert _kill_in_evaluation(workdir, data_dir, hang_at=2) == [10, 20]
  assert [(r["epoch"], r["split"]) for r in _rows(workdir)] == [(1, "train"), (1, "test"),
                                                                 (2, "train")]
  assert not rundir.is_finished(workdir, 2)
  trained = _rows(workdir)

  train.train_and_evaluate(_ten_step_config(), workdir, data_dir=data_dir)
  assert rundir.is_finished(workdir, 2)
  rows = _rows(workdir)
  assert rows[:3] == trained  # The same lines, times included: no epoch was trained again.
  assert _strip(rows) == _strip(_rows(ten_step_straight))
  assert rundir.checkpoint_steps(workdir) == [10, 20]
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(ten_step_straight))
