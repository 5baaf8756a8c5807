"""On-device input transforms: uint8 images in, model inputs out (inside the jitted step)."""

import jax
import jax.numpy as jnp

BINARIZE = ("none", "dynamic", "threshold")


def to_unit_interval(x_uint8: jax.Array) -> jax.Array:
  return x_uint8.astype(jnp.float32) / 255.0


def binarize(x: jax.Array, rng: jax.Array, mode: str) -> jax.Array:
  """Grey levels in [0, 1] -> the model's target, per `config.input.binarize`."""
  if mode == "none":
    return x
  if mode == "dynamic":  # A fresh sample each call: the binarisation of Burda et al. (2015).
    return jax.random.bernoulli(rng, x).astype(x.dtype)
  if mode == "threshold":
    return (x > 0.5).astype(x.dtype)
  raise ValueError(f"unknown binarize mode {mode!r}; use one of {BINARIZE}")


CORRUPTION = ("none", "gaussian", "mask")


def corrupt(x: jax.Array, rng: jax.Array, mode: str, noise_level: float) -> jax.Array:
  """The denoising AE's input: a corrupted copy of the target `x` (which stays clean)."""
  if mode == "none":
    return x
  if mode == "gaussian":  # Additive, unclipped: the classic denoising criterion.
    return x + noise_level * jax.random.normal(rng, x.shape, x.dtype)
  if mode == "mask":  # Each pixel zeroed independently with probability noise_level.
    return jnp.where(jax.random.bernoulli(rng, noise_level, x.shape), 0.0, x).astype(x.dtype)
  raise ValueError(f"unknown corruption {mode!r}; use one of {CORRUPTION}")
