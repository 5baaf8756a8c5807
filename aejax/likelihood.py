"""Test-set likelihood of VAE-family models: the ELBO and the importance-sampled NLL.

log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, z_k ~ q(z|x)
(`losses.iwae_bound`). The K samples are drawn in chunks so K = 5000 fits in memory.
"""

import math

import jax
import jax.numpy as jnp

from aejax import losses

LOG_2PI = math.log(2 * math.pi)


def diagonal_normal_log_prob(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag(exp(logvar))), summed over the last axis."""
  return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar), axis=-1)


def largest_divisor_at_most(n: int, limit: int) -> int:
  return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def vae_scores(params, x_BxHxWxC: jax.Array, rng: jax.Array, *, model, k: int,
               chunk: int) -> dict[str, jax.Array]:
  """Per-example [B] scores in nats, from K posterior samples: 'nll', 'elbo', 'rec', 'kl'.

  `chunk` must divide `k` (samples decoded together). The ELBO uses the closed-form KL and the
  mean of log p(x|z_k) over the same samples, so it is computed independently of the IS estimate.
  """
  if k % chunk:
    raise ValueError(f"chunk={chunk} must divide k={k}")
  mean_BxZ, logvar_BxZ = model.apply({"params": params}, x_BxHxWxC, method=model.encode)
  b = x_BxHxWxC.shape[0]
  x_CBxHxWxC = jnp.broadcast_to(x_BxHxWxC[None], (chunk, *x_BxHxWxC.shape)).reshape(
      chunk * b, *x_BxHxWxC.shape[1:])

  def one_chunk(j):
    eps_CxBxZ = jax.random.normal(jax.random.fold_in(rng, j), (chunk, *mean_BxZ.shape))
    z_CxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps_CxBxZ
    logits = model.apply({"params": params}, z_CxBxZ.reshape(chunk * b, -1), method=model.decode)
    log_px_CxB = -losses.bernoulli_nll(logits, x_CBxHxWxC).reshape(chunk, b)
    log_pz_CxB = diagonal_normal_log_prob(z_CxBxZ, jnp.zeros_like(z_CxBxZ),
                                          jnp.zeros_like(z_CxBxZ))
    log_qz_CxB = diagonal_normal_log_prob(z_CxBxZ, mean_BxZ[None], logvar_BxZ[None])
    return log_px_CxB + log_pz_CxB - log_qz_CxB, log_px_CxB

  log_w, log_px = jax.lax.map(one_chunk, jnp.arange(k // chunk))  # [K / chunk, chunk, B] each.
  log_w_KxB, log_px_KxB = log_w.reshape(k, b), log_px.reshape(k, b)
  rec_B = -jnp.mean(log_px_KxB, axis=0)
  kl_B = losses.kl_to_standard_normal(mean_BxZ, logvar_BxZ)
  return {"nll": -losses.iwae_bound(log_w_KxB), "elbo": -(rec_B + kl_B), "rec": rec_B,
          "kl": kl_B}
