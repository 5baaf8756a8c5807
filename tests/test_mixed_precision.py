"""config.dtype=bfloat16: bf16 compute, float32 parameters, optimizer state and loss."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from conftest import REPO
from aejax import configs
from aejax import hparams
from aejax import families
from aejax import optimizers
from aejax import sampling
from aejax import train
from aejax.state import init_state


def vae_experiment():
  return configs.load_experiment(os.path.join(REPO, "experiments", "vae.py"))


def test_bf16_computes_in_bf16_but_keeps_float32_state(mnist):
  config = vae_experiment()
  config.dtype = "bfloat16"
  model = families.create_model(config.model, (28, 28, 1), config.dtype)
  tx = optimizers.create_optimizer(config)
  state = init_state(jax.random.key(0), (28, 28, 1), model=model, tx=tx)
  x = jnp.asarray(mnist[0][:64])
  keys_B = sampling.example_keys(jax.random.key(1), 0, x.shape[0])
  outputs = model.apply({"params": state.params}, x.astype(jnp.float32) / 255, keys_B)
  assert outputs["logits"].dtype == jnp.bfloat16  # The dense layers really run in bf16.
  per_example = train.per_example_metrics(state.params, x, keys_B, hp=hparams.of(config),
                                          model=model, config=config, training=False)
  assert all(v.dtype == jnp.float32 for v in per_example.values())
  step = jax.jit(functools.partial(train.train_step, hp=hparams.of(config), model=model,
                                   tx=optimizers.for_runs(config), config=config))
  new_state, metrics = step(state, x, jax.random.key(2))
  for leaf in jax.tree.leaves((new_state.params, new_state.opt_state, metrics)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32, leaf.dtype
  assert np.isfinite(float(metrics["loss"]))


def test_bf16_vae_reaches_the_float32_test_elbo_within_one_nat(data_dir, tmp_path):
  """One epoch of experiments/vae.py in each dtype (README: 30 epochs, measured by hand)."""
  elbo = {}
  for dtype in ("float32", "bfloat16"):
    config = vae_experiment()
    config.num_epochs, config.dtype = 1, dtype
    workdir = str(tmp_path / dtype)
    train.train_and_evaluate(config, workdir, data_dir=data_dir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      elbo[dtype] = [json.loads(l) for l in f if '"test"' in l][-1]["elbo"]
  assert elbo["float32"] < -100  # A trained VAE: the untrained one scores about -540 nats.
  assert abs(elbo["bfloat16"] - elbo["float32"]) < 1.0, elbo


def test_unknown_dtype_is_a_user_error():
  import pytest
  from aejax.errors import UserError
  from aejax import validation
  config = configs.base()
  config.dtype = "float16"
  with pytest.raises(UserError, match="config.dtype"):
    validation.validate_config(config, 1)
