"""`python tests/parallel_equivalence.py DATA_DIR`: 10 VAE steps on 1 device, an 8-device mesh and
8-device pmap must give the same parameters (run by test_parallel.py in its own process, since
the CPU device count is fixed when JAX starts)."""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import functools

import jax
import numpy as np

from aejax import configs
from aejax.data import dataset
from aejax import models
from aejax import optimizers
from aejax import parallel
from aejax import train
from conftest import assert_same_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vae_config():
  return configs.load_experiment(os.path.join(REPO, "experiments", "vae.py"))


def ten_steps(config, images, mode, devices):
  mesh = jax.sharding.Mesh(np.asarray(devices), (parallel.DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))
  model = models.create_model(config.model, images.shape[1:])
  tx = optimizers.create_optimizer(config)
  keys = train.split_keys(config.seed)
  state = jax.jit(functools.partial(train.init_state, image_shape=images.shape[1:], model=model,
                                    tx=tx), out_shardings=parallel.replicated(mesh))(keys["init"])
  step_fn = functools.partial(train.train_step, model=model, tx=tx, config=config,
                              axis_name=parallel.DATA_AXIS if mode == "pmap" else None)
  chunk_fn = train.make_train_chunk(step_fn, batch_size=config.batch_size, keys=keys, mesh=mesh,
                                    mode=mode)
  if mode == "pmap":
    state, metrics = parallel.from_pmap(
        chunk_fn(parallel.to_pmap(state), parallel.to_pmap(images), 1, 0, 10), mesh)
  else:
    state, metrics = chunk_fn(state, parallel.put_replicated(images, mesh), 1, 0, 10)
  assert int(state.step) == 10
  return jax.device_get(state.params), float(metrics["loss"]) / 10  # Mean over the steps.


def main():
  config = vae_config()
  builder_dir = dataset.prepare("mnist", sys.argv[1])
  images = dataset.load_split(builder_dir, "train")[0][:10 * config.batch_size]
  devices = jax.devices()
  assert len(devices) == 8, devices
  one, loss_one = ten_steps(config, images, "mesh", devices[:1])
  mesh8, loss_mesh8 = ten_steps(config, images, "mesh", devices)
  pmap8, loss_pmap8 = ten_steps(config, images, "pmap", devices)
  assert_same_training(mesh8, one)
  assert_same_training(pmap8, one)
  assert_same_training(pmap8, mesh8)
  np.testing.assert_allclose([loss_mesh8, loss_pmap8], [loss_one] * 2, rtol=1e-5)
  # The 10 steps moved the parameters: equality is not that of untouched initial values.
  init = jax.device_get(train.init_state(train.split_keys(config.seed)["init"], images.shape[1:],
                                         model=models.create_model(config.model,
                                                                   images.shape[1:]),
                                         tx=optimizers.create_optimizer(config)).params)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one),
                                                           jax.tree.leaves(init)))
  assert moved > 1e-3, moved
  print(f"EQUIVALENT loss={loss_one:.6f} mesh8={loss_mesh8:.6f} pmap8={loss_pmap8:.6f} "
        f"max_param_change={moved:.4f}")


if __name__ == "__main__":
  main()
