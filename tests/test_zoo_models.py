"""The zoo's modules: conv encoder/decoder under every family, sigmoid codes, VQ lookup."""

import chex
import jax
import jax.numpy as jnp
import pytest

from aejax import configs
from aejax import families
from aejax import validation
from aejax.errors import UserError


def _init_apply(cfg, batch=3):
  model = families.create_model(cfg, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(9), (batch, 28, 28, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  return params, model.apply({"params": params}, x, jax.random.key(2))


@pytest.mark.parametrize("family,code_shape", [("ae", (3, 16)), ("vae", (3, 16)),
                                               ("vqvae", (3, 16))])
def test_conv_encoder_decoder_in_every_family(family, code_shape):
  cfg = configs.base().model
  cfg.name, cfg.encoder, cfg.channels, cfg.latents = family, "conv", (4, 8), 16
  cfg.code_dim, cfg.codebook_size = 4, 10
  params, out = _init_apply(cfg)
  chex.assert_shape(out["logits"], (3, 28, 28, 1))
  chex.assert_shape(out["z"], code_shape)
  # Two stride-2 convs (28 -> 14 -> 7) and their transposes: 4x4 kernels throughout.
  enc = params["encoder"]
  chex.assert_shape(enc["Conv_0"]["kernel"], (4, 4, 1, 4))
  chex.assert_shape(enc["Conv_1"]["kernel"], (4, 4, 4, 8))
  chex.assert_shape(enc["Dense_0"]["kernel"], (7 * 7 * 8, 16 * (2 if family == "vae" else 1)))
  chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (16, 7 * 7 * 8))


def test_conv_rejects_images_it_cannot_halve():
  config = configs.base()
  config.model.encoder, config.model.channels = "conv", (4, 8, 16)  # 28 is not divisible by 8.
  with pytest.raises(UserError, match="channels") as e:
    validation.validate_image_shape(config, (28, 28, 1))
  # 28 = 4 * 7 takes two halvings; the nearest multiples of 2^3 are 24 and 32.
  assert "at most 2 conv widths" in str(e.value) and "24 or 32" in str(e.value), e.value
  config.model.channels = (4, 8)
  validation.validate_image_shape(config, (28, 28, 1))
  # CelebA's 218x178: 218 = 2 * 109 allows one halving; multiples of 4 around each side.
  with pytest.raises(UserError, match="at most 1 conv width for") as e:
    validation.validate_image_shape(config, (218, 178, 3))
  assert "height of 216 or 220 and a width of 176 or 180" in str(e.value), e.value


def test_sigmoid_code_lies_in_the_unit_interval():
  cfg = configs.base().model
  cfg.hidden, cfg.latents, cfg.code_activation = (32,), 8, "sigmoid"
  _, out = _init_apply(cfg)
  assert bool(jnp.all((out["z"] > 0) & (out["z"] < 1)))


def test_vq_picks_the_nearest_code():
  cfg = configs.base().model
  cfg.name, cfg.hidden, cfg.latents, cfg.code_dim, cfg.codebook_size = "vqvae", (32,), 12, 4, 7
  params, out = _init_apply(cfg)
  book_KxD = params["quantizer"]["codebook"]
  d_BxNxK = jnp.sum(jnp.square(out["z_e"][:, :, None, :] - book_KxD[None, None]), axis=-1)
  chex.assert_trees_all_equal(out["indices"], jnp.argmin(d_BxNxK, axis=-1))
  chex.assert_trees_all_close(out["codes"], book_KxD[out["indices"]])
  config = configs.base()
  config.model.name, config.model.latents, config.model.code_dim = "vqvae", 10, 4
  with pytest.raises(UserError, match="multiple"):
    validation.validate_config(config, 1)
