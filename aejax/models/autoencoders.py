"""The autoencoder families: each maps images to a dict of outputs that `losses` scores."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax import sampling


class AE(nn.Module):
  """Deterministic code: z = encoder(x), logits = decoder(z)."""

  encoder: nn.Module  # Must output `latents` features.
  decoder: nn.Module

  def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
    return self.encoder(x_BxHxWxC)

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

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> dict[str, jax.Array]:
    """`keys_B`: one PRNG key per example (see aejax.sampling)."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    # Reparameterisation: the sample is a differentiable function of (mean, logvar).
    eps_BxZ = sampling.normal(keys_B, mean_BxZ.shape[1:], mean_BxZ.dtype)
    z_BxZ = mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
    return {"z": z_BxZ, "mean": mean_BxZ, "logvar": logvar_BxZ,
            "logits": self.decode(z_BxZ)}
