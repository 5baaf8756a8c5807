"""On-device input transforms: uint8 images in, model inputs out (inside the jitted step)."""

import jax
import jax.numpy as jnp

from aejax import sampling

BINARIZE = ("none", "dynamic", "threshold")


def to_unit_interval(x_uint8: jax.Array) -> jax.Array:
  return x_uint8.astype(jnp.float32) / 255.0


def binarize(x: jax.Array, stream: sampling.Stream, mode: str) -> jax.Array:
  """Grey levels in [0, 1] -> the model's input and target, per `config.input.binarize`."""
  if mode == "none":
    return x
  if mode == "dynamic":  # A fresh sample each call: the binarisation of Burda et al. (2015).
    return sampling.bernoulli(stream, x).astype(x.dtype)
  if mode == "threshold":
    return (x > 0.5).astype(x.dtype)
  raise ValueError(f"unknown binarize mode {mode!r}; use one of {BINARIZE}")


CORRUPTION = ("none", "gaussian", "mask")


def corrupt(x: jax.Array, stream: sampling.Stream, mode: str,
            noise_level: float | jax.Array) -> jax.Array:
  """The denoising AE's input: a corrupted copy of the target `x` (which stays clean)."""
  if mode == "none":
    return x
  if mode == "gaussian":  # Additive, unclipped: the classic denoising criterion.
    return x + noise_level * sampling.normal(stream, x.shape, x.dtype)
  if mode == "mask":  # Each pixel zeroed independently with probability noise_level.
    drop = sampling.bernoulli(stream, jnp.full(x.shape, noise_level, x.dtype))
    return jnp.where(drop, 0.0, x).astype(x.dtype)
  raise ValueError(f"unknown corruption {mode!r}; use one of {CORRUPTION}")
