"""Convolutional encoder and decoder: strided convolutions down, transposed convolutions up.

Both speak the same interface as the MLP pair (images -> features, codes -> logits), so every
family (AE, VAE, VQ-VAE) can use them through `config.model.encoder='conv'`.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvEncoder(nn.Module):
  """Images [B, H, W, C] -> features [B, out_features]; each conv halves H and W."""

  channels: Sequence[int]
  out_features: int
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
    h = x_BxHxWxC
    for c in self.channels:
      h = self.activation(nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME",
                                  dtype=self.dtype)(h))
    return nn.Dense(self.out_features, dtype=self.dtype)(h.reshape(h.shape[0], -1))


class ConvDecoder(nn.Module):
  """Codes [B, Z] -> logits [B, H, W, C]; the mirror of ConvEncoder (channels widest first)."""

  channels: Sequence[int]  # E.g. (64, 32): the encoder's channels reversed.
  image_shape: tuple[int, int, int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    height, width, out_channels = self.image_shape
    scale = 2 ** len(self.channels)
    h0, w0 = height // scale, width // scale
    h = self.activation(nn.Dense(h0 * w0 * self.channels[0], dtype=self.dtype)(z_BxZ))
    h = h.reshape(z_BxZ.shape[0], h0, w0, self.channels[0])
    # One upsampling per encoder conv: the widest channels are the coarsest grid.
    for c in self.channels[1:]:
      h = self.activation(nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME",
                                           dtype=self.dtype)(h))
    logits = nn.ConvTranspose(out_channels, (4, 4), strides=(2, 2), padding="SAME",
                              dtype=self.dtype)(h)
    assert logits.shape[1:] == tuple(self.image_shape), (logits.shape, self.image_shape)
    return logits


def check_image_shape(channels: Sequence[int], image_shape: tuple[int, ...]) -> str | None:
  """Why the conv pair cannot round-trip `image_shape`, or None if it can."""
  scale = 2 ** len(channels)
  if not channels:
    return "config.model.channels is empty; give at least one conv width, e.g. (32, 64)"
  if image_shape[0] % scale or image_shape[1] % scale:
    return (f"images of {image_shape[0]}x{image_shape[1]} are not divisible by 2^"
            f"{len(channels)}={scale} (one halving per conv); use fewer config.model.channels")
  return None
