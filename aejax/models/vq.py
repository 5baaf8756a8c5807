"""Vector quantisation (van den Oord et al., 2017): a learned codebook, nearest-code lookup,
and the straight-through estimator that lets the decoder's gradient reach the encoder."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class VectorQuantizer(nn.Module):
  """Vectors [B, N, D] -> (straight-through z_q, the chosen codes, their indices)."""

  codebook_size: int
  code_dim: int

  @nn.compact
  def __call__(self, z_e_BxNxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    codebook_KxD = self.param(
        "codebook", nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
        (self.codebook_size, self.code_dim))
    # Squared distances without materialising [B, N, K, D].
    norms_1x1xK = jnp.sum(jnp.square(codebook_KxD), -1)[None, None]
    d2_BxNxK = (jnp.sum(jnp.square(z_e_BxNxD), -1, keepdims=True)
                - 2 * z_e_BxNxD @ codebook_KxD.T + norms_1x1xK)
    idx_BxN = jnp.argmin(d2_BxNxK, axis=-1)
    e_BxNxD = codebook_KxD[idx_BxN]
    # Forward: the code; backward: identity to z_e. The codebook gets no gradient from here,
    # only from the codebook loss.
    z_q_BxNxD = z_e_BxNxD + jax.lax.stop_gradient(e_BxNxD - z_e_BxNxD)
    return z_q_BxNxD, e_BxNxD, idx_BxN
