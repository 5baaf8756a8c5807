"""config.model -> a Flax module: an explicit table, not a registry, so every choice is in view."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from aejax.errors import UserError
from aejax.models.autoencoders import AE, VAE, VQVAE
from aejax.models.conv import CONV_IMPLS, ConvDecoder, ConvEncoder, check_image_shape
from aejax.models.mlp import MLPDecoder, MLPEncoder

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
               "softplus": nn.softplus}
CODE_ACTIVATIONS = {"none": None, "sigmoid": nn.sigmoid}
FAMILIES = {"ae": (AE, 1), "vae": (VAE, 2), "vqvae": (VQVAE, 1)}  # -> (class, outputs/latent).
ENCODERS = ("mlp", "conv")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # Compute dtypes (config.dtype).


def _encoder_decoder(cfg, out_features, image_shape, act, dtype):
  if cfg.encoder == "mlp":
    hidden = tuple(cfg.hidden)
    return (MLPEncoder(hidden, out_features, act, dtype=dtype),
            MLPDecoder(hidden[::-1], tuple(image_shape), act, dtype=dtype))
  channels = tuple(cfg.channels)
  if (problem := check_image_shape(channels, image_shape)) is not None:
    raise UserError(problem)
  if cfg.conv_impl not in CONV_IMPLS:
    raise UserError(f"unknown config.model.conv_impl={cfg.conv_impl!r}; use one of {CONV_IMPLS}")
  return (ConvEncoder(channels, out_features, act, dtype=dtype, conv_impl=cfg.conv_impl),
          ConvDecoder(channels[::-1], tuple(image_shape), act, dtype=dtype,
                      conv_impl=cfg.conv_impl))


def create_model(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 dtype: str = "float32") -> nn.Module:
  if cfg.name not in FAMILIES:
    raise UserError(f"unknown config.model.name={cfg.name!r}; use one of {sorted(FAMILIES)}")
  if cfg.encoder not in ENCODERS:
    raise UserError(f"unknown config.model.encoder={cfg.encoder!r}; use one of {ENCODERS}")
  if cfg.activation not in ACTIVATIONS:
    raise UserError(f"unknown config.model.activation={cfg.activation!r}; "
                    f"use one of {sorted(ACTIVATIONS)}")
  if dtype not in DTYPES:
    raise UserError(f"unknown config.dtype={dtype!r}; use one of {sorted(DTYPES)}")
  family, outputs_per_latent = FAMILIES[cfg.name]
  encoder, decoder = _encoder_decoder(cfg, outputs_per_latent * cfg.latents, image_shape,
                                      ACTIVATIONS[cfg.activation], DTYPES[dtype])
  if cfg.name == "ae":
    if cfg.code_activation not in CODE_ACTIVATIONS:
      raise UserError(f"unknown config.model.code_activation={cfg.code_activation!r}; "
                      f"use one of {sorted(CODE_ACTIVATIONS)}")
    return AE(encoder=encoder, decoder=decoder,
              code_activation=CODE_ACTIVATIONS[cfg.code_activation])
  if cfg.name == "vqvae":
    if cfg.code_dim < 1 or cfg.latents % cfg.code_dim:
      raise UserError(f"config.model.latents={cfg.latents} must be a multiple of "
                      f"config.model.code_dim={cfg.code_dim} (the code is latents/code_dim "
                      f"vectors)")
    if cfg.codebook_size < 1:
      raise UserError(f"config.model.codebook_size={cfg.codebook_size} must be >= 1")
    return VQVAE(encoder=encoder, decoder=decoder, codebook_size=cfg.codebook_size,
                 code_dim=cfg.code_dim)
  return family(encoder=encoder, decoder=decoder)
