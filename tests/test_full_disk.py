"""A file that does not fit on the disk: exit 5 and one line naming it, older files intact, and
a re-run after freeing space resumes bitwise. Checkpoints, metrics.jsonl appends and config.json.

The disk is a small tmpfs. Mounting one needs CAP_SYS_ADMIN; a runner without it (rootless CI,
an unprivileged container) reruns each test in a user and mount namespace of its own (`unshare
-Urm`), where any user may mount a tmpfs. Where neither works the tests skip, except in CI
(CI=true), where they fail.
"""

import contextlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.errors import StorageError
from aejax.run import checkpoint
from aejax.run import rundir
from conftest import run_aejax, saved_state

# 60 steps per epoch; a checkpoint (params and Adam moments) is 1.2 MB, so 2 fit on 3 MB.
TINY_AE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(64,)",
           "--config.batch_size=1000", "--config.num_epochs=3"]
# 12 steps per epoch; a metrics.jsonl line is ~190 bytes, so the file outgrows one 4 kB page of
# the tmpfs at epoch 11.
SMALL_AE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(32,)",
            "--config.batch_size=1000", "--config.input.train_labels=(0,1)",
            "--config.num_epochs=14"]
IN_NAMESPACE = "AEJAX_TEST_IN_NAMESPACE"  # Set for the pytest that runs inside the namespace.


def _try(*command: str) -> subprocess.CompletedProcess:
  """A command that is not installed fails like one that is refused."""
  try:
    return subprocess.run(command, capture_output=True, text=True)
  except FileNotFoundError as e:
    return subprocess.CompletedProcess(command, 127, "", str(e))


def _mount_tmpfs(path, size) -> subprocess.CompletedProcess:
  os.makedirs(path, exist_ok=True)
  return _try("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))


def _ran_in_namespace(request, tmp_path, data_dir) -> bool:
  """False when this process may mount a tmpfs; else runs this test in a new user and mount
  namespace, asserts that it passed there, and returns True (the caller then returns)."""
  probe = _mount_tmpfs(tmp_path / "probe", "4k")
  if probe.returncode == 0:
    subprocess.run(["umount", str(tmp_path / "probe")], check=True)
    return False
  why = f"cannot mount a tmpfs to fill ({' '.join(probe.stderr.split())})"
  if os.environ.get(IN_NAMESPACE):
    pytest.fail(f"{why}, even in a user and mount namespace")
  unshare = _try("unshare", "-Urm", "true")
  if unshare.returncode:
    why += f", nor create a user and mount namespace ({' '.join(unshare.stderr.split())})"
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)
  # The run's data and compilation cache (the compilation_cache fixture set its variable).
  options = [f"--data_dir={data_dir}",
             f"--compilation_cache_dir={os.environ['JAX_COMPILATION_CACHE_DIR']}"]
  if request.config.getoption("manual_dir"):
    options.append(f"--manual_dir={os.path.abspath(request.config.getoption('manual_dir'))}")
  proc = subprocess.run(
      ["unshare", "-Urm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       request.node.nodeid, f"--basetemp={tmp_path / 'namespace'}", *options],
      cwd=str(request.config.rootpath), env={**os.environ, IN_NAMESPACE: "1"},
      capture_output=True, text=True)
  assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-5000:]
  return True


@contextlib.contextmanager
def _tmpfs(path, size):
  proc = _mount_tmpfs(path, size)
  assert proc.returncode == 0, proc.stderr  # _ran_in_namespace checked that this works.
  try:
    yield str(path)
  finally:  # Best effort: a failed unmount must not hide the test's own failure.
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _grow(disk):
  """More room, the data kept. (Naming the source: mount(8) in a user namespace needs it.)"""
  subprocess.run(["mount", "-o", "remount,size=64M", "tmpfs", disk], check=True)


def _state(workdir, step):
  return saved_state(workdir, step)[0]


def _assert_bitwise_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_a_full_disk_exits_5_in_one_line_and_a_rerun_with_space_resumes_bitwise(data_dir,
                                                                                  tmp_path,
                                                                                  request):
  if _ran_in_namespace(request, tmp_path, data_dir):
    return
  straight = str(tmp_path / "straight")
  assert run_aejax(*TINY_AE, f"--workdir={straight}", f"--data_dir={data_dir}").returncode == 0

  with _tmpfs(tmp_path / "disk", "3M") as disk:
    workdir = os.path.join(disk, "w")
    flags = [*TINY_AE, f"--workdir={workdir}", f"--data_dir={data_dir}"]
    # The third checkpoint (step 180, after the last epoch) fails; the final wait reports it.
    proc = run_aejax(*flags)
    assert proc.returncode == 5, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(
        f"aejax: error: could not write the checkpoint at step 180 under {workdir}/checkpoints "
        f"(No space left on device; "), lines
    assert "free there); the newest intact checkpoint is step 120; free space " in lines[0]
    assert "re-run the same command to resume from it" in lines[0]
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(ckpt_dir), key=int) == ["60", "120"]  # No partial directory left.
    for step in (60, 120):  # Intact, and what the uninterrupted run saved.
      _assert_bitwise_equal(_state(workdir, step), _state(straight, step))

    _grow(disk)
    proc = run_aejax(*flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from the checkpoint at step 120" in proc.stderr
    _assert_bitwise_equal(_state(workdir, 180), _state(straight, 180))


def test_a_failed_save_is_reported_by_the_next_save_with_its_own_step(data_dir, tmp_path,
                                                                      request):
  if _ran_in_namespace(request, tmp_path, data_dir):
    return
  with _tmpfs(tmp_path / "disk", "1M") as disk:
    mngr = checkpoint.manager(os.path.join(disk, "w", "checkpoints"), max_to_keep=3)
    # 600 kB of incompressible floats: one checkpoint fits in 1 MB, two do not.
    w = jnp.asarray(np.random.default_rng(0).standard_normal(150_000), jnp.float32)
    checkpoint.save(mngr, 1, {"w": w}, {})
    checkpoint.save(mngr, 2, {"w": w + 1}, {})  # Fails in the background.
    with pytest.raises(StorageError, match=r"the checkpoint at step 2 under .* \(No space left on "
                       r"device; .* free there\); the newest intact checkpoint is step 1;"):
      checkpoint.save(mngr, 3, {"w": w + 2}, {})
    assert os.listdir(os.path.join(disk, "w", "checkpoints")) == ["1"]
    restored, _ = checkpoint.restore(mngr, 1, {"w": w})
    np.testing.assert_array_equal(restored["w"], w)


@pytest.fixture(scope="module")
def small_straight(data_dir, tmp_path_factory):
  """The uninterrupted SMALL_AE run; asked for (request.getfixturevalue) only where the test runs,
  not by a test that reruns itself in a namespace."""
  workdir = str(tmp_path_factory.mktemp("full_disk") / "straight")
  proc = run_aejax(*SMALL_AE, f"--workdir={workdir}", f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def _workdir_on(disk, elsewhere):
  """A workdir on `disk` whose checkpoints and TensorBoard files go to `elsewhere`, so that
  only config.json, metrics.jsonl and the lock file fill the disk."""
  workdir = os.path.join(disk, "w")
  os.makedirs(workdir)
  for name in ("checkpoints", "tensorboard"):
    os.makedirs(os.path.join(elsewhere, name))
    os.symlink(os.path.join(elsewhere, name), os.path.join(workdir, name))
  return workdir


def _one_error_line(proc):
  assert proc.returncode == 5, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax:")]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return lines[0]


def test_a_metrics_append_that_does_not_fit_exits_5_and_the_rerun_resumes_bitwise(
    data_dir, tmp_path, request):
  """Mutations: MetricWriter.write without storage.writing (exit 1 and a traceback), and
  set_aside_metrics_after keeping a cut-off last line (the resume appends to it: a bad line)
  fail it."""
  if _ran_in_namespace(request, tmp_path, data_dir):
    return
  straight = request.getfixturevalue("small_straight")
  # Three pages: the lock file, config.json and the first 4 kB of metrics.jsonl.
  with _tmpfs(tmp_path / "disk", "12k") as disk:
    workdir = _workdir_on(disk, str(tmp_path / "big"))
    flags = [*SMALL_AE, f"--workdir={workdir}", f"--data_dir={data_dir}"]
    line = _one_error_line(run_aejax(*flags))
    metrics = os.path.join(workdir, "metrics.jsonl")
    assert line == (f"aejax: error: could not write {metrics} (No space left on device; 0 B "
                    f"free there); free space (or fix permissions) and re-run the same command")
    assert os.path.getsize(metrics) == 4096  # Cut off where the disk was full.
    # Epoch 11's checkpoint is on disk before its evaluation, whose test line did not fit.
    assert rundir.checkpoint_steps(workdir) == [108, 120, 132]

    _grow(disk)
    proc = run_aejax(*flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from the checkpoint at step 132" in proc.stderr
    assert "Epoch 11 has no test line" in proc.stderr  # Evaluated again, not trained again.
    _assert_bitwise_equal(_state(workdir, 168), _state(straight, 168))
    with open(metrics) as f:
      rows = [json.loads(l) for l in f]
    assert [(r["epoch"], r["split"]) for r in rows] == [
        (e, s) for e in range(1, 15) for s in ("train", "test")]


def test_a_config_json_that_does_not_fit_exits_5_and_the_rerun_trains_bitwise(
    data_dir, tmp_path, request):
  """Mutation: rundir.write_config through open() instead of storage.atomic fails it."""
  if _ran_in_namespace(request, tmp_path, data_dir):
    return
  straight = request.getfixturevalue("small_straight")
  with _tmpfs(tmp_path / "disk", "8k") as disk:
    workdir = _workdir_on(disk, str(tmp_path / "big"))
    with open(os.path.join(disk, "filler"), "wb") as f:  # One page; the lock file takes the other.
      f.write(b"\0" * 4096)
    flags = [*SMALL_AE, f"--workdir={workdir}", f"--data_dir={data_dir}"]
    line = _one_error_line(run_aejax(*flags))
    assert line == (f"aejax: error: could not write {workdir}/config.json (No space left on "
                    f"device; 0 B free there); free space (or fix permissions) and re-run the "
                    f"same command")
    assert sorted(os.listdir(workdir)) == [".lock", "checkpoints", "tensorboard"]  # No temp file.

    _grow(disk)
    proc = run_aejax(*flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_bitwise_equal(_state(workdir, 168), _state(straight, 168))
