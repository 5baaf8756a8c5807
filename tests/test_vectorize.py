"""Vectorised groups: G runs as one vmapped program equal the same runs trained one by one."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import hparams
from aejax import models
from aejax import optimizers
from aejax import parallel
from aejax import train
from aejax.configs import load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = ("time", "examples_per_sec")  # Wall-clock fields differ between any two runs.


def _experiment(name):
  return load_experiment(os.path.join(REPO, "experiments", f"{name}.py"))


def _shrink(config, seed, lr):
  config.seed, config.learning_rate = seed, lr
  config.batch_size = 3000  # 20 steps per epoch of the 60k MNIST training images.
  config.num_epochs = 1
  config.eval_batch_size = 2000
  return config


def _small_vae(seed, lr):
  config = _shrink(_experiment("vae"), seed, lr)
  config.model.hidden, config.model.latents = (32,), 4
  return config


def _small_conv_ae(seed, lr):
  config = _shrink(_experiment("conv_ae"), seed, lr)
  config.model.channels, config.model.latents = (4, 8), 4
  # The squared error: with the file's cross-entropy one decoder bias of 392 differs by 1.7e-5
  # after 20 steps (Adam's division by sqrt(v) turns the vmapped convolutions' summation order
  # into a visible update of a near-zero gradient), beyond the atol 1e-6 this test holds to.
  config.loss = "mse"
  return config


def _lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in SKIP} for line in f]


def _assert_group_equals_runs_alone(make_config, values, root, data_dir):
  cfgs = [make_config(seed, lr) for seed, lr in values]
  alone = [train.train_and_evaluate(c, str(root / f"alone{i}"), data_dir=data_dir)
           for i, c in enumerate(cfgs)]
  group = train.train_group(cfgs, [str(root / f"group{i}") for i in range(len(cfgs))],
                            data_dir=data_dir)
  for i, state in enumerate(alone):
    got = jax.tree.map(lambda x: np.asarray(x[i]), group.params)
    jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6), got,
                 jax.device_get(state.params))
    want_lines, got_lines = _lines(root / f"alone{i}"), _lines(root / f"group{i}")
    assert [(l["step"], l["split"], sorted(l)) for l in got_lines] == [
        (l["step"], l["split"], sorted(l)) for l in want_lines]
    for g, w in zip(got_lines, want_lines):
      numbers = [k for k in sorted(w) if k != "split"]
      np.testing.assert_allclose([g[k] for k in numbers], [w[k] for k in numbers], rtol=1e-5,
                                 atol=1e-6)
  # The runs really differ: a group that trained one run four times would pass the above only
  # if every run were the same.
  first = jax.tree.leaves(group.params)[0]
  assert not np.allclose(first[0], first[1])


def test_vae_group_of_2_seeds_x_2_learning_rates_equals_4_runs_alone(data_dir, tmp_path):
  values = [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
  _assert_group_equals_runs_alone(_small_vae, values, tmp_path, data_dir)


@pytest.mark.parametrize("loop", ["scan", "host"])
def test_conv_ae_group_equals_runs_alone(mnist, loop):
  """The conv family through the loop's chunk, scanned and as a host loop (conv models' choice
  on CPU), on 640 images (20 steps of 32): a whole-MNIST epoch of XLA's CPU convolutions would
  cost minutes."""
  images = mnist[0][:640]
  cfgs = [_small_conv_ae(0, 1e-3), _small_conv_ae(1, 3e-3)]
  for c in cfgs:
    c.batch_size = 32
  mesh = parallel.make_mesh()
  model = models.create_model(cfgs[0].model, images.shape[1:])
  make_tx = functools.partial(optimizers.create_optimizer, cfgs[0], 20)
  init = functools.partial(train.init_state, image_shape=images.shape[1:], model=model,
                           tx=make_tx(hparams.of(cfgs[0])))
  step_fn = functools.partial(train.train_step, model=model, tx=make_tx, config=cfgs[0])
  images = parallel.put_replicated(images, mesh)
  runs = [{"keys": train.split_keys(c.seed), "hp": hparams.of(c)} for c in cfgs]
  chunk = train.make_train_chunk(step_fn, batch_size=32, mesh=mesh, loop=loop)
  alone = [chunk.lower(init(r["keys"]["init"]), images, 1, 0, 20, r).compile()(
      init(r["keys"]["init"]), images, 1, 0, r) for r in runs]
  run = jax.tree.map(lambda *xs: jnp.stack(xs), *runs)
  group_chunk = train.make_train_chunk(step_fn, batch_size=32, mesh=mesh, loop=loop,
                                       vectorized=True)
  group_state = jax.vmap(init)(run["keys"]["init"])
  group, group_sums = group_chunk.lower(group_state, images, 1, 0, 20, run).compile()(
      group_state, images, 1, 0, run)
  for i, (state, sums) in enumerate(alone):
    assert int(group.step[i]) == int(state.step) == 20
    jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6),
                 jax.tree.map(lambda x: np.asarray(x[i]), group.params),
                 jax.device_get(state.params))
    assert sorted(group_sums) == sorted(sums)
    for k in sums:
      np.testing.assert_allclose(group_sums[k][i], sums[k], rtol=1e-5, atol=1e-6)
  first = jax.tree.leaves(group.params)[0]
  assert not np.allclose(first[0], first[1])


def test_pmap_loop_passes_the_run_and_matches_the_mesh(data_dir, tmp_path):
  """The loop hands keys and hyperparameters to the pmapped chunk as an argument too."""
  from conftest import assert_same_training, run_aejax
  from test_sweep_vectorize import _final_params

  flags = ["--config=experiments/vae.py", f"--data_dir={data_dir}", "--config.num_epochs=1",
           "--config.batch_size=3000", "--config.eval_batch_size=2000",
           "--config.model.hidden=(16,)", "--config.steps_per_call=7"]
  for name, extra, devices in (("pmap", ["--config.parallel=pmap"], 2), ("mesh", [], 1)):
    proc = run_aejax(*flags, f"--workdir={tmp_path / name}", *extra, timeout=600,
                     env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert_same_training(_final_params(str(tmp_path / "pmap")),
                       _final_params(str(tmp_path / "mesh")))
