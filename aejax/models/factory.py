"""config.model -> a Flax module. An explicit table, not a registry, so a reader sees every choice."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from aejax.errors import UserError
from aejax.models.autoencoders import AE, VAE
from aejax.models.mlp import MLPDecoder, MLPEncoder

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
               "softplus": nn.softplus}
FAMILIES = {"ae": (AE, 1), "vae": (VAE, 2)}  # Family -> (class, encoder outputs per latent).
ENCODERS = ("mlp",)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # Compute dtypes (config.dtype).


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
  act = ACTIVATIONS[cfg.activation]
  hidden = tuple(cfg.hidden)
  encoder = MLPEncoder(hidden, outputs_per_latent * cfg.latents, act, dtype=DTYPES[dtype])
  decoder = MLPDecoder(hidden[::-1], tuple(image_shape), act, dtype=DTYPES[dtype])
  return family(encoder=encoder, decoder=decoder)
