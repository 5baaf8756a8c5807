"""The execution of a chunk of steps (scan, unrolled scan, host loop) changes no result."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import epochs
from aejax import group
from aejax import hparams
from aejax import loops
from aejax import families
from aejax import optimizers
from aejax import parallel
from aejax import train
from aejax.state import init_state

BATCH, STEPS = 32, 20


def _tiny(encoder: str, opt: str = "adam"):
  config = configs.base()
  config.model.encoder, config.model.hidden, config.model.channels = encoder, (32,), (4, 8)
  config.opt.name = opt
  return config


def _train(config, images, loop: str, mode: str = "mesh", chunks=(STEPS,), nan_at=None):
  """Parameters and per-chunk sums after STEPS steps of epoch 1, run in `chunks` calls; the
  loss of step `nan_at` is reported as NaN."""
  model = families.create_model(config.model, (28, 28, 1))
  tx = optimizers.create_optimizer(config)
  run, mesh = group.run_inputs(config), parallel.make_mesh()
  step_fn = functools.partial(train.train_step, hp=hparams.of(config), model=model,
                              tx=optimizers.for_runs(config), config=config,
                              axis_name=parallel.DATA_AXIS if mode == "pmap" else None)
  if nan_at is not None:
    def step_fn(state, x, rng, hp, inner=step_fn):
      new_state, metrics = inner(state, x, rng, hp=hp)
      metrics["loss"] = jnp.where(state.step == nan_at, jnp.nan, metrics["loss"])
      return new_state, metrics
  to_call = parallel.to_pmap if mode == "pmap" else (lambda tree: tree)
  state = to_call(init_state(run["keys"]["init"], (28, 28, 1), model=model, tx=tx))
  images = to_call(images)
  chunk_fn = epochs.make_train_chunk(step_fn, batch_size=BATCH, mesh=mesh, mode=mode, loop=loop)
  start, all_sums = 0, []
  for n in chunks:
    state, sums = chunk_fn.lower(state, images, 1, start, n, run).compile()(state, images, 1,
                                                                            start, run)
    start, all_sums = start + n, all_sums + [jax.device_get(sums)]
  params = state.params if mode == "mesh" else jax.tree.map(lambda x: x[0], state.params)
  return jax.device_get(params), all_sums


def _assert_bitwise(actual, desired):
  for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
    np.testing.assert_array_equal(a, d)


@pytest.fixture(scope="module")
def images(mnist):
  return mnist[0][:STEPS * BATCH]


def test_auto_picks_a_host_loop_only_for_conv_models_on_cpu():
  assert loops.resolve("auto", "conv", "cpu") == "host"
  assert loops.resolve("auto", "mlp", "cpu") == "scan"
  assert loops.resolve("auto", "conv", "gpu") == "scan"
  assert loops.resolve("auto", "conv", "tpu") == "scan"
  assert loops.resolve("unroll", "conv", "gpu") == "unroll"


def test_mlp_parameters_after_20_steps_are_bitwise_equal_for_every_loop(images):
  # Dense layers compile to the same ops inside and outside a while loop: bitwise.
  config = _tiny("mlp")
  scan_params, scan_sums = _train(config, images, "scan")
  for loop in ("unroll", "host"):
    params, sums = _train(config, images, loop)
    _assert_bitwise(params, scan_params)
    assert sums == scan_sums, loop  # Loss sums and first_nonfinite (-1) alike.
  assert scan_sums[0]["first_nonfinite"] == -1 and np.isfinite(scan_sums[0]["loss"])


def test_every_loop_reports_the_same_first_nonfinite_step(images):
  config = _tiny("mlp")
  for loop in ("scan", "host"):  # Steps 0-6 in the first call, 7-19 in the second.
    sums = _train(config, images, loop, chunks=(7, 13), nan_at=11)[1]
    assert [s["first_nonfinite"] for s in sums] == [-1, 4], loop


def test_host_loop_under_pmap_and_in_chunks_matches_the_scan(images):
  config = _tiny("mlp")
  scan_params, scan_sums = _train(config, images, "scan", mode="pmap")
  params, sums = _train(config, images, "host", mode="pmap")
  _assert_bitwise(params, scan_params)
  np.testing.assert_array_equal(sums[0]["loss"], scan_sums[0]["loss"])
  # Split into calls as steps_per_call (or a resume) splits them: the same 20 steps.
  params, sums = _train(config, images, "host", chunks=(7, 13))
  _assert_bitwise(params, _train(config, images, "scan")[0])
  assert len(sums) == 2 and sums[1]["first_nonfinite"] == -1


def test_conv_parameters_after_20_steps_agree_between_loops(images):
  # XLA:CPU computes some convolutions inside a while loop with other kernels (another
  # summation order), so host loop vs scan agree to float32 rounding, not bitwise. SGD keeps
  # that rounding at its size (Adam divides by sqrt(v) + eps and scales the rounding of
  # near-zero gradients up to a relative 1e-4, still under 1e-7 absolute).
  config = _tiny("conv", opt="sgd")
  config.learning_rate = 1e-4
  # The strided form: in the space-to-depth one the scan's rounding of a few near-zero weights
  # reaches a relative 2e-6 (2.6e-12 absolute).
  config.model.conv_impl = "strided"
  scan_params, scan_sums = _train(config, images, "scan")
  host_params, host_sums = _train(config, images, "host")
  _assert_bitwise(_train(config, images, "unroll")[0], host_params)  # The same top-level ops.
  for a, d in zip(jax.tree.leaves(host_params), jax.tree.leaves(scan_params), strict=True):
    np.testing.assert_allclose(a, d, rtol=1e-6, atol=0)
  np.testing.assert_allclose(host_sums[0]["loss"], scan_sums[0]["loss"], rtol=1e-6)
  assert host_sums[0]["first_nonfinite"] == scan_sums[0]["first_nonfinite"] == -1
