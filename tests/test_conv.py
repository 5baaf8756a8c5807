"""The space-to-depth formulation of the conv pair computes the strided one's function."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import hparams
from aejax import families
from aejax import models
from aejax import sampling
from aejax import train
from aejax.errors import UserError
from aejax.models import conv


def _random(shape, seed, fan_in=1):
  """Normal draws scaled so a conv's outputs are O(1): float32 rounding is then ~1e-6."""
  return jax.random.normal(jax.random.key(seed), shape) / np.sqrt(fan_in)


@pytest.mark.parametrize("hw,c_in,c_out", [(28, 1, 32), (14, 32, 64), (6, 3, 5)])
def test_space_to_depth_conv_equals_the_strided_conv(hw, c_in, c_out):
  x, kernel = _random((2, hw, hw, c_in), 0), _random((4, 4, c_in, c_out), 1, 16 * c_in)
  want = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = conv.conv_space_to_depth(x, kernel, (2, 2), "SAME")
  assert got.shape == (2, hw // 2, hw // 2, c_out)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,c_in,c_out", [(7, 64, 32), (14, 32, 1), (3, 2, 5)])
def test_depth_to_space_conv_equals_the_transposed_conv(hw, c_in, c_out):
  x, kernel = _random((2, hw, hw, c_in), 2), _random((4, 4, c_in, c_out), 3, 4 * c_in)
  want = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME",
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = conv.conv_transpose_depth_to_space(x, kernel)
  assert got.shape == (2, 2 * hw, 2 * hw, c_out)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_space_to_depth_round_trips():
  x = _random((2, 6, 4, 3), 4)
  np.testing.assert_array_equal(conv.depth_to_space(conv.space_to_depth(x)), x)
  # Channel c of pixel (2i + p, 2j + q) lands in block (i, j), channel (2p + q) * C + c.
  np.testing.assert_array_equal(conv.space_to_depth(x)[:, 1, 0, 3 * 3 + 2], x[:, 3, 1, 2])


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae"])
def test_both_formulations_share_parameters_and_compute_the_same_model(mnist, family):
  cfg = configs.with_conv(configs.base())
  cfg.model.name, cfg.loss = family, {"ae": "mse", "vae": "elbo", "vqvae": "mse"}[family]
  x_uint8 = jnp.asarray(mnist[0][:16])
  keys_B = sampling.example_keys(jax.random.key(5), 0, 16)
  outs = {}
  for impl in models.CONV_IMPLS:
    cfg.model.conv_impl = impl
    model = families.create_model(cfg.model, (28, 28, 1))
    x = x_uint8.astype(jnp.float32) / 255
    params = model.init(jax.random.key(0), x, keys_B)["params"]
    metrics_fn = functools.partial(train.per_example_metrics, hp=hparams.of(cfg), model=model,
                                   config=cfg, training=False)
    loss_fn = lambda p: jnp.mean(metrics_fn(p, x_uint8, keys_B)["loss"])
    outs[impl] = (params, model.apply({"params": params}, x, keys_B), jax.grad(loss_fn)(params))
  (p_s, out_s, g_s), (p_d, out_d, g_d) = outs["strided"], outs["space_to_depth"]
  # The same parameter tree and initial values: checkpoints move between formulations.
  jax.tree.map(np.testing.assert_array_equal, p_d, p_s)
  np.testing.assert_allclose(out_d["logits"], out_s["logits"], rtol=1e-4, atol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5), g_d, g_s)


def test_an_unknown_conv_impl_is_a_user_error():
  from aejax import validation

  config = configs.with_conv(configs.base())
  config.model.conv_impl = "winograd"
  with pytest.raises(UserError, match="conv_impl='winograd'"):
    validation.validate_config(config, 1)
