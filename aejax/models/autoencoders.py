"""The autoencoder families: each maps images to a dict of outputs that `losses` scores.

Every family has one interface: `encode(x)` (its encoder's output: the code, a VAE's posterior
(mean, logvar)), `code(x)` (one point code [B, Z] per image: the AE's code, the posterior mean, the
quantised vectors), `decode(z)` (logits) and `__call__(x, keys_B)`.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax import sampling
from aejax.models.vq import VectorQuantizer


class AE(nn.Module):
  """Deterministic code: z = encoder(x), logits = decoder(z)."""

  encoder: nn.Module  # Must output `latents` features.
  decoder: nn.Module
  # Squashes the code, e.g. a sigmoid code whose mean activation a sparsity penalty targets.
  code_activation: Callable[[jax.Array], jax.Array] | None = None

  def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
    z_BxZ = self.encoder(x_BxHxWxC)
    return z_BxZ if self.code_activation is None else self.code_activation(z_BxZ)

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    return self.encode(x_BxHxWxC)

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> dict[str, jax.Array]:
    del keys_B  # Deterministic; the argument keeps one call signature for every family.
    z_BxZ = self.encode(x_BxHxWxC)
    return {"z": z_BxZ, "logits": self.decode(z_BxZ)}


class VAE(nn.Module):
  """Diagonal Gaussian posterior q(z|x), N(0, I) prior, decoder giving Bernoulli logits."""

  encoder: nn.Module  # Must output 2 * latents features: the mean and the log-variance.
  decoder: nn.Module

  def encode(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    h_Bx2Z = self.encoder(x_BxHxWxC)
    mean_BxZ, logvar_BxZ = jnp.split(h_Bx2Z, 2, axis=-1)
    return mean_BxZ, logvar_BxZ

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The posterior mean."""
    return self.encode(x_BxHxWxC)[0]

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> dict[str, jax.Array]:
    """`keys_B`: one PRNG key per example, or one key (see aejax.sampling)."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    keys_B = sampling.as_example_keys(keys_B, x_BxHxWxC.shape[0])
    # Reparameterisation: the sample is a differentiable function of (mean, logvar).
    eps_BxZ = sampling.normal(keys_B, mean_BxZ.shape[1:], mean_BxZ.dtype)
    z_BxZ = mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
    return {"z": z_BxZ, "mean": mean_BxZ, "logvar": logvar_BxZ,
            "logits": self.decode(z_BxZ)}


class VQVAE(nn.Module):
  """Discrete code: the encoder's output, cut into vectors of `code_dim`, snaps to a codebook."""

  encoder: nn.Module  # Must output `latents` features, a multiple of code_dim.
  decoder: nn.Module
  codebook_size: int
  code_dim: int

  def setup(self):
    self.quantizer = VectorQuantizer(self.codebook_size, self.code_dim)

  def _quantize(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, ...]:
    z_e_BxL = self.encoder(x_BxHxWxC)
    z_e_BxNxD = z_e_BxL.reshape(z_e_BxL.shape[0], -1, self.code_dim)
    z_q_BxNxD, e_BxNxD, idx_BxN = self.quantizer(z_e_BxNxD)
    return z_q_BxNxD.reshape(z_e_BxL.shape), z_e_BxNxD, e_BxNxD, idx_BxN

  def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The quantised code [B, latents] (straight-through: the gradient reaches the encoder)."""
    return self._quantize(x_BxHxWxC)[0]

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    return self.encode(x_BxHxWxC)

  def decode(self, z_BxL: jax.Array) -> jax.Array:
    return self.decoder(z_BxL)

  def __call__(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> dict[str, jax.Array]:
    del keys_B  # Deterministic.
    z_BxL, z_e_BxNxD, e_BxNxD, idx_BxN = self._quantize(x_BxHxWxC)
    return {"z": z_BxL, "z_e": z_e_BxNxD, "codes": e_BxNxD, "indices": idx_BxN,
            "logits": self.decode(z_BxL)}
