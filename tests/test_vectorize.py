"""Vectorised groups: G runs as one vmapped program equal the same runs trained one by one."""

import json
import os

import jax
import numpy as np
import pytest

from aejax import configs
from aejax import train
from experiments import conv_ae
from experiments import vae

SKIP = ("time", "examples_per_sec")  # Wall-clock fields differ between any two runs.


def _shrink(config, seed, lr):
  config.seed, config.learning_rate = seed, lr
  config.batch_size = 3000  # 20 steps per epoch of the 60k MNIST training images.
  config.num_epochs = 1
  config.eval_batch_size = 2000
  return config


def _small_vae(seed, lr):
  config = _shrink(vae.get_config(), seed, lr)
  config.model.hidden, config.model.latents = (32,), 4
  return config


def _small_conv_ae(seed, lr):
  config = _shrink(conv_ae.get_config(), seed, lr)
  config.model.channels, config.model.latents = (4, 8), 4
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


def test_conv_ae_group_equals_runs_alone(data_dir, tmp_path):
  _assert_group_equals_runs_alone(_small_conv_ae, [(0, 1e-3), (1, 3e-3)], tmp_path, data_dir)
