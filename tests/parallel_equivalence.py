"""`python tests/parallel_equivalence.py DATA_DIR`: 10 VAE steps on 1 device, an 8-device mesh and
8-device pmap must give the same parameters and gradient norms (run by test_parallel.py in its
own process, since the CPU device count is fixed when JAX starts). First, the binarisation of a
global batch of MNIST drawn on 1 device must equal the one drawn on 4, under jit over a mesh and
under pmap: the train step draws each purpose's randomness once, of the global batch's shape.

Each layout trains with Adam and with plain SGD. Adam nearly hides a wrong gradient scale: its
update does not change when every gradient is multiplied by the same factor, save through eps.
SGD's update is the gradient times the learning rate, and the mean `grad_norm` is compared too.
Mutation run: a `psum` of the gradients in place of the `pmean` in train_step (8 times the
gradient on 8 devices) moved 10 of Adam's 392,000 first-layer weights beyond the tolerance,
against 496 of the 500 of SGD's first mismatching array (up to 1,199 times apart).
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import functools

import jax
import numpy as np

from aejax import configs
from aejax import epochs
from aejax import group
from aejax import families
from aejax import optimizers
from aejax import parallel
from aejax import preprocess
from aejax import sampling
from aejax import train
from aejax.data import dataset
from aejax.state import init_state
from conftest import assert_same_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vae_config(opt: str):
  config = configs.load_experiment(os.path.join(REPO, "experiments", "vae.py"))
  config.opt.name = opt
  if opt == "sgd":  # Large enough that a gradient 8 times too large moves the weights visibly.
    config.learning_rate = 1e-3
  return config


def ten_steps(config, images, mode, devices):
  """(params, mean loss, mean grad_norm) after 10 steps on `devices`."""
  mesh = jax.sharding.Mesh(np.asarray(devices), (parallel.DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))
  model = families.create_model(config.model, images.shape[1:])
  tx = optimizers.for_runs(config)
  run = jax.device_put(group.run_inputs(config), parallel.replicated(mesh))
  state = jax.jit(functools.partial(init_state, image_shape=images.shape[1:], model=model,
                                    tx=tx(run["hp"])),
                  out_shardings=parallel.replicated(mesh))(run["keys"]["init"])
  step_fn = functools.partial(train.train_step, model=model, tx=tx, config=config,
                              axis_name=parallel.DATA_AXIS if mode == "pmap" else None)
  chunk_fn = epochs.make_train_chunk(step_fn, batch_size=config.batch_size, mesh=mesh, mode=mode)
  if mode == "pmap":
    state, sums = parallel.from_pmap(
        chunk_fn(parallel.to_pmap(state), parallel.to_pmap(images), 1, 0, 10, run), mesh)
  else:
    state, sums = chunk_fn(state, parallel.put_replicated(images, mesh), 1, 0, 10, run)
  assert int(state.step) == 10
  return (jax.device_get(state.params), float(sums["loss"]) / 10,
          float(sums["grad_norm"]) / 10)


def binarisations(images_uint8, devices):
  """The dynamic binarisation of one global batch from one key: on devices[0], jit over a mesh
  of `devices` with the batch sharded, and pmap over `devices` with each device its rows."""
  key = jax.random.key(11)
  binarize = lambda x, axis_name=None: preprocess.binarize(
      preprocess.to_unit_interval(x), sampling.Stream(key, axis_name), "dynamic")
  one = jax.jit(binarize)(jax.device_put(images_uint8, devices[0]))
  mesh = jax.sharding.Mesh(np.asarray(devices), (parallel.DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.device_put(images_uint8, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(parallel.DATA_AXIS)))
  mesh_x = jax.jit(binarize)(sharded)
  assert len(mesh_x.sharding.device_set) == len(devices), mesh_x.sharding
  n = len(devices)
  pmap_x = jax.pmap(functools.partial(binarize, axis_name=parallel.DATA_AXIS),
                    axis_name=parallel.DATA_AXIS, devices=devices)(
      images_uint8.reshape(n, -1, *images_uint8.shape[1:]))
  return np.asarray(one), np.asarray(mesh_x), np.asarray(pmap_x).reshape(images_uint8.shape)


def main():
  builder_dir = dataset.prepare("mnist", sys.argv[1])
  devices = jax.devices()
  assert len(devices) == 8, devices
  images = dataset.load_split(builder_dir, "train")[0][:128]
  one, mesh4, pmap4 = binarisations(images, devices[:4])
  np.testing.assert_array_equal(mesh4, one)
  np.testing.assert_array_equal(pmap4, one)
  # A draw, not a threshold: grey pixels (about a fifth of the ink) land on both sides.
  grey = (images > 0) & (images < 255)
  assert 0.2 < one[grey].mean() < 0.8 and set(np.unique(one)) == {0.0, 1.0}, one[grey].mean()
  print(f"EQUIVALENT binarisation on 1 and 4 devices ({int(grey.sum())} grey pixels)")
  for opt in ("adam", "sgd"):
    config = vae_config(opt)
    images = dataset.load_split(builder_dir, "train")[0][:10 * config.batch_size]
    one, loss_one, norm_one = ten_steps(config, images, "mesh", devices[:1])
    mesh8, loss_mesh8, norm_mesh8 = ten_steps(config, images, "mesh", devices)
    pmap8, loss_pmap8, norm_pmap8 = ten_steps(config, images, "pmap", devices)
    assert_same_training(mesh8, one)
    assert_same_training(pmap8, one)
    assert_same_training(pmap8, mesh8)
    np.testing.assert_allclose([loss_mesh8, loss_pmap8], [loss_one] * 2, rtol=1e-5)
    np.testing.assert_allclose([norm_mesh8, norm_pmap8], [norm_one] * 2, rtol=1e-4)
    # The 10 steps moved the parameters: equality is not that of untouched initial values.
    init = jax.device_get(init_state(group.split_keys(config.seed)["init"], images.shape[1:],
                                     model=families.create_model(config.model, images.shape[1:]),
                                     tx=optimizers.create_optimizer(config)).params)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one),
                                                             jax.tree.leaves(init)))
    assert moved > 1e-3, (opt, moved)
    print(f"EQUIVALENT {opt} loss={loss_one:.6f} mesh8={loss_mesh8:.6f} pmap8={loss_pmap8:.6f} "
          f"grad_norm={norm_one:.6f} mesh8={norm_mesh8:.6f} pmap8={norm_pmap8:.6f} "
          f"max_param_change={moved:.4f}")


if __name__ == "__main__":
  main()
