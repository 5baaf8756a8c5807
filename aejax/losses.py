"""Objectives. Every term is per example (shape [B], in nats or squared error per image), so the
train step can average it and evaluation can sum it under a padding mask."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

RECONSTRUCTION = ("mse", "bce")


def _sum_per_example(v: jax.Array) -> jax.Array:
  return v.reshape(v.shape[0], -1).sum(axis=-1)


def squared_error(x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """Squared error summed over every pixel of each image: [B]."""
  return _sum_per_example(jnp.square(x_hat - x))


def bernoulli_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
  """-log p(x | logits) under independent Bernoullis, summed per image: [B].

  Also the cross-entropy against grey-level targets in [0, 1].
  """
  return _sum_per_example(optax.sigmoid_binary_cross_entropy(logits, x))


def gaussian_kl(mean_q: jax.Array, logvar_q: jax.Array, mean_p: jax.Array,
                logvar_p: jax.Array) -> jax.Array:
  """KL(q || p) between diagonal Gaussians, summed over the last axis: [B]."""
  return 0.5 * jnp.sum(
      logvar_p - logvar_q + (jnp.exp(logvar_q) + jnp.square(mean_q - mean_p)) / jnp.exp(logvar_p)
      - 1.0, axis=-1)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  zeros = jnp.zeros_like(mean)
  return gaussian_kl(mean, logvar, zeros, zeros)


def ae_objective(outputs: dict[str, jax.Array], x: jax.Array,
                 reconstruction: str) -> dict[str, jax.Array]:
  """Reconstruction loss of a deterministic autoencoder, plus both error measures."""
  logits = outputs["logits"]
  metrics = {"sq_err": squared_error(jax.nn.sigmoid(logits), x),
             "bce": bernoulli_nll(logits, x)}
  if reconstruction not in RECONSTRUCTION:
    raise ValueError(f"unknown loss {reconstruction!r}; use one of {RECONSTRUCTION}")
  metrics["loss"] = metrics["sq_err" if reconstruction == "mse" else "bce"]
  return metrics


def elbo_objective(outputs: dict[str, jax.Array], x: jax.Array) -> dict[str, jax.Array]:
  """Negative ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z)), one posterior sample, in nats."""
  rec = bernoulli_nll(outputs["logits"], x)
  kl = kl_to_standard_normal(outputs["mean"], outputs["logvar"])
  return {"loss": rec + kl, "rec": rec, "kl": kl, "elbo": -(rec + kl)}


Objective = Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
LOSSES = {"ae": RECONSTRUCTION, "vae": ("elbo",)}  # Model family -> the losses it can train with.


def get_objective(family: str, loss: str) -> Objective:
  """The objective for a model family: `objective(outputs, x) -> per-example metrics`."""
  if loss not in LOSSES.get(family, ()):
    raise ValueError(f"loss {loss!r} does not fit model {family!r}; use one of "
                     f"{LOSSES.get(family)}")
  if family == "vae":
    return elbo_objective
  return functools.partial(ae_objective, reconstruction=loss)


def iwae_bound(log_w_KxB: jax.Array) -> jax.Array:
  """Importance-weighted bound log (1/K) sum_k w_k per example, from log-weights [K, B]: [B].

  With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x), this is the IWAE bound
  (Burda et al. 2015): below log p(x), above the ELBO on average, tight as K grows.
  """
  return jax.nn.logsumexp(log_w_KxB, axis=0) - jnp.log(log_w_KxB.shape[0])
