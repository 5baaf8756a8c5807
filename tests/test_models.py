"""Model construction and output shapes."""

import chex
import jax
import jax.numpy as jnp
import pytest

from aejax import configs
from aejax import families
from aejax import sampling
from aejax import validation
from aejax.errors import UserError

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def _init_apply(model_cfg, batch=5):
  model = families.create_model(model_cfg, (28, 28, 1))
  x = jnp.zeros((batch, 28, 28, 1))
  keys = lambda seed: sampling.example_keys(jax.random.key(seed), 0, batch)
  params = model.init(jax.random.key(0), x, keys(1))["params"]
  return model, params, model.apply({"params": params}, x, keys(2))


def test_ae_output_shapes():
  cfg = configs.base().model
  model, params, out = _init_apply(cfg)
  chex.assert_shape(out["z"], (5, 32))
  chex.assert_shape(out["logits"], (5, 28, 28, 1))
  # 784-512-256-32 encoder and its mirror.
  n = sum(p.size for p in jax.tree.leaves(params))
  enc = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 32 + 32
  dec = 32 * 256 + 256 + 256 * 512 + 512 + 512 * 784 + 784
  assert n == enc + dec


def test_vae_output_shapes_and_sampling():
  cfg = configs.base().model
  cfg.name, cfg.hidden, cfg.latents = "vae", (500,), 20
  model, params, out = _init_apply(cfg)
  for k in ("z", "mean", "logvar"):
    chex.assert_shape(out[k], (5, 20))
  chex.assert_shape(out["logits"], (5, 28, 28, 1))
  # The code is a sample: another key gives another z around the same mean.
  x = jnp.zeros((5, 28, 28, 1))
  other = model.apply({"params": params}, x, sampling.example_keys(jax.random.key(3), 0, 5))
  chex.assert_trees_all_close(other["mean"], out["mean"])
  assert not jnp.allclose(other["z"], out["z"])


@pytest.mark.parametrize("field,value", [("name", "gan"), ("encoder", "transformer"),
                                         ("activation", "swishy")])
def test_unknown_model_choices_are_user_errors(field, value):
  config = configs.base()
  config.model[field] = value
  with pytest.raises(UserError, match=value):
    validation.validate_config(config, 1)


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae"])
def test_every_family_has_encode_code_and_decode(family):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = family, (16,), 8
  config.model.code_dim, config.model.codebook_size = 4, 5
  model, params, out = _init_apply(config.model)
  x = jnp.zeros((5, 28, 28, 1))
  code = model.apply({"params": params}, x, method=model.code)
  chex.assert_shape(code, (5, 8))
  logits = model.apply({"params": params}, code, method=model.decode)
  if family != "vae":  # Deterministic codes: code -> decode is the forward pass itself.
    chex.assert_trees_all_close(logits, out["logits"], rtol=1e-6)
    chex.assert_trees_all_close(code, out["z"], rtol=1e-6)
  else:  # The point code of a VAE is its posterior mean.
    chex.assert_trees_all_close(code, out["mean"], rtol=1e-6)
