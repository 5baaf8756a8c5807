"""Fully connected encoder and decoder."""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPEncoder(nn.Module):
  """Images [B, H, W, C] -> features [B, out_features]."""

  hidden: Sequence[int]
  out_features: int
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
    h_BxD = x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1)
    for width in self.hidden:
      h_BxD = self.activation(nn.Dense(width, dtype=self.dtype)(h_BxD))
    return nn.Dense(self.out_features, dtype=self.dtype)(h_BxD)


class MLPDecoder(nn.Module):
  """Codes [B, Z] -> per-pixel logits [B, H, W, C]."""

  hidden: Sequence[int]
  image_shape: tuple[int, int, int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    h_BxD = z_BxZ
    for width in self.hidden:
      h_BxD = self.activation(nn.Dense(width, dtype=self.dtype)(h_BxD))
    logits_BxD = nn.Dense(math.prod(self.image_shape), dtype=self.dtype)(h_BxD)
    return logits_BxD.reshape(z_BxZ.shape[0], *self.image_shape)
