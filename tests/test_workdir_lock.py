"""One process writes a workdir at a time: a second run or analysis exits 2 naming the holder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from aejax.run import lock
from conftest import REPO, run_aejax

# 60 steps per epoch: a few seconds each, long enough for a second process to start meanwhile.
TINY = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(32,)",
        "--config.batch_size=1000"]


def _start(*args):
  return subprocess.Popen([sys.executable, "-m", "aejax.main", *args], cwd=REPO,
                          stderr=subprocess.PIPE, text=True)


def _wait_for_lock(workdir, proc, timeout=300):
  """Until `proc` holds the workdir's lock (its pid is written into the lock file)."""
  path = os.path.join(workdir, lock.FILENAME)
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    if os.path.exists(path) and open(path).read().split()[:1] == [str(proc.pid)]:
      return
    time.sleep(0.2)
  pytest.fail("the run did not take the workdir lock")


def _error_line(stderr):
  lines = [l for l in stderr.splitlines() if l.startswith("aejax: error:")]
  assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
  return lines[0]


def test_a_second_run_on_a_busy_workdir_exits_2_and_a_killed_run_leaves_no_stale_lock(
    data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  flags = [*TINY, f"--workdir={workdir}", f"--data_dir={data_dir}"]
  first = _start(*flags, "--config.num_epochs=4")
  _wait_for_lock(workdir, first)

  # Stopped while the second starts, however long that takes on a loaded machine: the first
  # still holds the lock (a stopped process keeps its files) and cannot finish meanwhile.
  first.send_signal(signal.SIGSTOP)
  try:
    second = run_aejax(*flags, "--config.num_epochs=4", timeout=300)
  finally:
    first.send_signal(signal.SIGCONT)
  assert second.returncode == 2, second.stderr[-3000:]
  line = _error_line(second.stderr)
  assert line == (f"aejax: error: {workdir} is in use by pid {first.pid} on host "
                  f"{socket.gethostname()} (another aejax run or analysis writes there); wait for "
                  f"it to finish, or kill it, or pass another --workdir"), line
  # Refused at start-up, before it read any data: a bound that load cannot stretch, unlike the
  # seconds it takes (importing JAX and TFDS on 2 busy cores can take more than 10). Mutation:
  # train.py taking the lock after _prepare_data fails this.
  assert "Load dataset info" not in second.stderr and "Data:" not in second.stderr
  assert first.poll() is None  # Refused while the first still ran, not after it.

  _, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr[-3000:]
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [(r["epoch"], r["split"]) for r in rows] == [
      (e, s) for e in range(1, 5) for s in ("train", "test")]

  # SIGKILL leaves the lock file behind, holding the dead pid; it does not block the next run.
  killed = _start(*flags, "--config.num_epochs=5")
  _wait_for_lock(workdir, killed)
  killed.send_signal(signal.SIGKILL)
  killed.wait(timeout=60)
  assert open(os.path.join(workdir, lock.FILENAME)).read().split()[0] == str(killed.pid)
  resumed = run_aejax(*flags, "--config.num_epochs=5")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming from the checkpoint at step 240" in resumed.stderr

  # aejax.analyze takes the lock before it writes analysis/: here this test process holds it.
  lock.acquire(workdir)
  try:
    proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", module="aejax.analyze")
  finally:
    lock.release(workdir)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert f"is in use by pid {os.getpid()}" in _error_line(proc.stderr)
  assert not os.path.exists(os.path.join(workdir, "analysis"))


def test_the_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path):
  workdir = str(tmp_path / "w")
  lock.acquire(workdir)
  lock.acquire(workdir)  # The same process again (an in-process resume) does not block itself.
  code = (f"from aejax.run import lock\ntry: lock.acquire({workdir!r})\n"
          f"except Exception as e: print(type(e).__name__, e)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True).stdout
  assert out.startswith(f"UserError {workdir} is in use by pid {os.getpid()} on host "), out
  lock.release(workdir)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True).stdout
  assert out == "", out  # Released: the other process takes it.


def test_a_lock_whose_holder_line_cannot_be_written_is_released_and_closed(tmp_path,
                                                                          monkeypatch):
  """A full disk when the holder's pid is written: exit 5 naming the lock file, and this process
  keeps neither the descriptor nor the flock (catches: acquire without closing the descriptor
  when that write fails, which leaves one more open file and the workdir locked until exit)."""
  import errno

  from aejax.errors import StorageError

  workdir = str(tmp_path / "w")
  open_fds = len(os.listdir("/proc/self/fd"))

  def full_disk(fd, data, offset):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "pwrite", full_disk)
  with pytest.raises(StorageError, match=rf"^could not write {workdir}/{lock.FILENAME} \(No "
                     rf"space left on device"):
    lock.acquire(workdir)
  monkeypatch.undo()
  assert len(os.listdir("/proc/self/fd")) == open_fds and not lock._held
  code = (f"from aejax.run import lock\ntry: lock.acquire({workdir!r})\n"
          f"except Exception as e: print(type(e).__name__, e)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True).stdout
  assert out == "", out  # Not held: another process takes it.
