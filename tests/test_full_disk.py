"""A checkpoint that does not fit on the disk: exit 5, one line, older checkpoints intact, and a
re-run after freeing space resumes bitwise. The disk is a small tmpfs (mounting needs root)."""

import contextlib
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.errors import StorageError
from aejax.run import checkpoint
from conftest import run_aejax, saved_state

# 60 steps per epoch; a checkpoint (params and Adam moments) is 1.2 MB, so 2 fit on 3 MB.
TINY_AE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(64,)",
           "--config.batch_size=1000", "--config.num_epochs=3"]


@contextlib.contextmanager
def _tmpfs(path, size):
  os.makedirs(path, exist_ok=True)
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True, text=True)
  if proc.returncode:
    pytest.skip(f"cannot mount a tmpfs to fill ({proc.stderr.strip()}); this test needs root")
  try:
    yield str(path)
  finally:
    subprocess.run(["umount", "-l", str(path)], check=True)


def _state(workdir, step):
  return saved_state(workdir, step)[0]


def _assert_bitwise_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_a_full_disk_exits_5_in_one_line_and_a_rerun_with_space_resumes_bitwise(data_dir,
                                                                                  tmp_path):
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
        f"(No space left on device); the newest intact checkpoint is step 120; free space "), lines
    assert "re-run the same command to resume from it" in lines[0]
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(ckpt_dir), key=int) == ["60", "120"]  # No partial directory left.
    for step in (60, 120):  # Intact, and what the uninterrupted run saved.
      _assert_bitwise_equal(_state(workdir, step), _state(straight, step))

    subprocess.run(["mount", "-o", "remount,size=64M", disk], check=True)
    proc = run_aejax(*flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from the checkpoint at step 120" in proc.stderr
    _assert_bitwise_equal(_state(workdir, 180), _state(straight, 180))


def test_a_failed_save_is_reported_by_the_next_save_with_its_own_step(tmp_path):
  with _tmpfs(tmp_path / "disk", "1M") as disk:
    mngr = checkpoint.manager(os.path.join(disk, "w", "checkpoints"), max_to_keep=3)
    # 600 kB of incompressible floats: one checkpoint fits in 1 MB, two do not.
    w = jnp.asarray(np.random.default_rng(0).standard_normal(150_000), jnp.float32)
    checkpoint.save(mngr, 1, {"w": w}, {})
    checkpoint.save(mngr, 2, {"w": w + 1}, {})  # Fails in the background.
    with pytest.raises(StorageError, match=r"the checkpoint at step 2 under .* \(No space left on "
                       r"device\); the newest intact checkpoint is step 1;"):
      checkpoint.save(mngr, 3, {"w": w + 2}, {})
    assert os.listdir(os.path.join(disk, "w", "checkpoints")) == ["1"]
    restored, _ = checkpoint.restore(mngr, 1, {"w": w})
    np.testing.assert_array_equal(restored["w"], w)
