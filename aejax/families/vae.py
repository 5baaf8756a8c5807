"""The VAE: diagonal Gaussian posterior q(z|x), N(0, I) prior, Bernoulli decoder; trained with
the (beta-weighted) ELBO or the IWAE bound, its NLL estimated by aejax.likelihood."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.models import factory

LOSSES = ("elbo", "iwae")
LIKELIHOOD = True
POOLED = ()
OWN_FIELDS = {"model.num_samples": 1}
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.


class VAE(nn.Module):
  encoder: nn.Module  # Must output 2 * latents features: the mean and the log-variance.
  decoder: nn.Module
  latents: int

  def encode(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    h_Bx2Z = self.encoder(x_BxHxWxC)
    mean_BxZ, logvar_BxZ = jnp.split(h_Bx2Z, 2, axis=-1)
    return mean_BxZ, logvar_BxZ

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The posterior mean."""
    return self.encode(x_BxHxWxC)[0]

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Codes [num, latents] drawn from the prior N(0, I); decode them for images."""
    return jax.random.normal(key, (num, self.latents))

  # The hooks of aejax.likelihood, the one NLL estimator: a family with another prior overrides
  # log_prior; one with another posterior or more stochastic layers overrides all four.
  @property
  def noise_size(self) -> int:
    """The standard-normal draws one posterior sample takes."""
    return self.latents

  def posterior(self, x_BxHxWxC: jax.Array) -> Any:
    """What the encoder computes once per image (its posterior's parameters), in float32."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    return mean_BxZ.astype(jnp.float32), logvar_BxZ.astype(jnp.float32)

  def log_prior(self, z_KxBxZ: jax.Array) -> jax.Array:
    """log p(z): [K, B]."""
    zeros_1x1xZ = jnp.zeros((1, 1, z_KxBxZ.shape[-1]), z_KxBxZ.dtype)
    return losses.log_normal_diag(z_KxBxZ, zeros_1x1xZ, zeros_1x1xZ)

  def log_weights(self, posterior: Any, eps_KxBxE: jax.Array, x_Bx: jax.Array) -> jax.Array:
    """log p(x|z) + log p(z) - log q(z|x) of the K posterior samples the draws eps make: [K, B].
    The reparameterised samples carry gradients to the encoder and the decoder."""
    mean_BxZ, logvar_BxZ = posterior
    z_KxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps_KxBxE
    k, b = z_KxBxZ.shape[:2]
    logits = self.decode(z_KxBxZ.reshape(k * b, -1)).astype(jnp.float32)
    log_px_KxB = losses.log_likelihood(logits.reshape(k, *x_Bx.shape), x_Bx)
    log_qz_KxB = losses.log_normal_diag(z_KxBxZ, mean_BxZ[None], logvar_BxZ[None])
    return log_px_KxB + self.log_prior(z_KxBxZ) - log_qz_KxB

  def __call__(self, x_BxHxWxC: jax.Array, keys_B: jax.Array) -> dict[str, jax.Array]:
    """`keys_B`: one PRNG key per example, or one key (see aejax.sampling)."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    keys_B = sampling.as_example_keys(keys_B, x_BxHxWxC.shape[0])
    # Reparameterisation: the sample is a differentiable function of (mean, logvar).
    eps_BxZ = sampling.normal(keys_B, mean_BxZ.shape[1:], mean_BxZ.dtype)
    z_BxZ = mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
    return {"z": z_BxZ, "mean": mean_BxZ, "logvar": logvar_BxZ,
            "logits": self.decode(z_BxZ)}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> nn.Module:
  encoder, decoder = factory.encoder_decoder(cfg, 2 * cfg.latents, image_shape, dtype)
  return VAE(encoder=encoder, decoder=decoder, latents=cfg.latents)


def kl_weight(step: jax.Array | None, hp: hparams.Hparams) -> jax.Array:
  """beta, ramped linearly from 0 over the first kl_warmup_steps; evaluation (step None) uses
  the final weight, so test losses compare across the warm-up. The values come from `hp`."""
  beta, warmup = hp["objective.beta"], hp["objective.kl_warmup_steps"]
  if step is None:
    return beta
  # A warm-up of 0 steps is no ramp; the max only keeps the unused side of the where finite.
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  return beta * jnp.where(warmup > 0, ramp, 1.0)


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array, keys_B: jax.Array,
                config: ml_collections.ConfigDict, step: jax.Array | None, hp: hparams.Hparams,
                axis_name: str | None) -> forward.Metrics:
  """The model keeps the whole keys (the draws of a plain VAE do not depend on what else is on);
  the test NLL's samples come from keys folded off them."""
  del axis_name  # Every term is the example's own.
  if config.loss == "iwae":
    k = config.model.num_samples
    log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x, keys_B, k, k)
    bound = losses.iwae_bound(log_w_KxB)
    metrics = {"loss": -bound, "iwae_bound": bound, "elbo": jnp.mean(log_w_KxB, axis=0)}
  else:
    metrics = losses.elbo_objective(forward.outputs(model, params, x_in, keys_B), x)
    if hparams.structure(config)["kl_weighted"]:
      w = kl_weight(step, hp)
      metrics["loss"] = metrics["rec"] + w * metrics["kl"]
      metrics["kl_weight"] = jnp.broadcast_to(w, metrics["loss"].shape)
  if step is None and config.eval_num_samples:
    log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x,
                                                  sampling.fold_in(keys_B, 1),
                                                  config.eval_num_samples,
                                                  config.eval_sample_chunk)
    metrics["nll"] = -losses.iwae_bound(log_w_KxB)
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  o, k = config.objective, config.model.num_samples
  if k > 1 and config.loss != "iwae":
    return (f"config.model.num_samples={k} is the IWAE's k: use > 1 only with "
            f"config.loss='iwae'")
  if config.loss == "iwae" and (o.beta != 1 or o.kl_warmup_steps):
    return "the IWAE bound has no KL weight; leave config.objective.beta=1 and kl_warmup_steps=0"
  return None
