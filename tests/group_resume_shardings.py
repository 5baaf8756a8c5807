"""`python tests/group_resume_shardings.py DATA_DIR`: a group of 4 runs on 4 CPU devices (the run
axis split, one run a device) resumes with each run's checkpoint read onto its own device and
saved from it, and ends bitwise equal to the uninterrupted group (run by test_group_faults.py in
its own process, since the CPU device count is fixed when JAX starts)."""

import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax
import numpy as np

from aejax import train
from aejax.run import checkpoint
from test_group_faults import _small_config


def device_sets(tree):
  return {frozenset(x.sharding.device_set) for x in jax.tree.leaves(tree)}


def main():
  data_dir, root = sys.argv[1], tempfile.mkdtemp()
  devices = jax.devices()
  assert len(devices) == 4, devices
  cfgs = lambda epochs: [_small_config(seed=s, num_epochs=epochs) for s in range(4)]
  straight = [os.path.join(root, f"straight{i}") for i in range(4)]
  resumed = [os.path.join(root, f"resumed{i}") for i in range(4)]
  want = train.train_group(cfgs(2), straight, data_dir=data_dir)
  train.train_group(cfgs(1), resumed, data_dir=data_dir)

  reads, saves = {}, {}
  read, save = checkpoint.read, checkpoint.save

  def recording_read(mngr, step, like):
    state, meta = read(mngr, step, like)
    reads[str(mngr.directory)] = (device_sets(like), device_sets(state))
    return state, meta

  def recording_save(mngr, step, state, meta):
    saves[str(mngr.directory)] = device_sets(state)
    return save(mngr, step, state, meta)

  checkpoint.read, checkpoint.save = recording_read, recording_save
  got = train.train_group(cfgs(2), resumed, data_dir=data_dir)
  checkpoint.read, checkpoint.save = read, save

  for i, workdir in enumerate(resumed):
    own = {frozenset([devices[i]])}
    target, restored = reads[os.path.join(workdir, "checkpoints")]
    assert target == restored == own, (i, target, restored)  # Read onto run i's device only.
    assert saves[os.path.join(workdir, "checkpoints")] == own, (i, saves)  # Saved from it.
  spec = {x.sharding.spec for x in jax.tree.leaves(got.params)}
  assert spec == {jax.sharding.PartitionSpec("data")}, spec  # Resumed run-sharded.
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  print("RUN-SHARDED RESUME: each run read onto and saved from its own device; bitwise equal")


if __name__ == "__main__":
  main()
