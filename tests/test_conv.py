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


def test_disentanglement_libs_conv_pair_is_a_config():
  """channels (32, 32, 64, 64) and conv_dense (256,) on 64x64x1 images with 10 latents build
  disentanglement_lib's conv_encoder and deconv_decoder (methods/shared/architectures.py): each
  layer's kernel shape and each network's parameter count, counted by hand from its layers
  (encoder 544 + 16,416 + 32,832 + 65,600 + 262,400 + 2 x 2,570; decoder 2,816 + 263,168 +
  65,600 + 32,800 + 16,416 + 513). catches: conv_dense left out of the decoder; a dense layer
  too many in it."""
  cfg = configs.with_conv(configs.base())
  cfg.model.name, cfg.loss, cfg.model.latents = "vae", "elbo", 10
  cfg.model.channels, cfg.model.conv_dense = (32, 32, 64, 64), (256,)
  model = families.create_model(cfg.model, (64, 64, 1))
  key = jax.random.key(0)
  params = jax.eval_shape(model.init, key, jnp.zeros((2, 64, 64, 1)), key)["params"]
  kernels = lambda net: {name: layer["kernel"].shape for name, layer in params[net].items()}
  assert kernels("encoder") == {
      "Conv_0": (4, 4, 1, 32), "Conv_1": (4, 4, 32, 32), "Conv_2": (4, 4, 32, 64),
      "Conv_3": (4, 4, 64, 64), "Dense_0": (1024, 256), "Dense_1": (256, 20)}
  assert kernels("decoder") == {
      "Dense_0": (10, 256), "Dense_1": (256, 1024), "ConvTranspose_0": (4, 4, 64, 64),
      "ConvTranspose_1": (4, 4, 64, 32), "ConvTranspose_2": (4, 4, 32, 32),
      "ConvTranspose_3": (4, 4, 32, 1)}
  count = lambda net: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params[net]))
  assert (count("encoder"), count("decoder")) == (382932, 381313)


def test_a_non_positive_conv_dense_width_is_a_user_error():
  from aejax import validation

  config = configs.with_conv(configs.base())
  config.model.conv_dense = (256, 0)
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  assert str(e.value) == "config.model.conv_dense=(256, 0) must be positive layer widths"
