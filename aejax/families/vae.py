"""The VAE: diagonal Gaussian posterior q(z|x), N(0, I) prior, a decoder distribution p(x|z) of
aejax.decoder_dists (Bernoulli, Gaussian or discretised logistic); trained with
the (beta-weighted) ELBO or a multi-sample bound (IWAE, MIWAE, PIWAE, CIWAE: `bound_metrics`),
its NLL estimated by aejax.likelihood."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aejax import decoder_dists
from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.models import factory

# The multi-sample bounds of `bound_metrics`, on the log weights of aejax.likelihood.
BOUNDS = ("iwae", "miwae", "piwae", "ciwae")
LOSSES = ("elbo", *BOUNDS)
LIKELIHOOD = True
POOLED = ()
OWN_FIELDS = {"model.num_samples": 1, "model.num_bounds": 1, "objective.ciwae_beta": 0.0}
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.


class VAE(nn.Module):
  encoder: nn.Module  # Must output 2 * latents features: the mean and the log-variance.
  decoder: nn.Module
  latents: int
  decoder_dist: decoder_dists.DecoderDist  # p(x|z): what the decoder's outputs parameterise.

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
  # log_prior; one with another posterior or more stochastic layers overrides all four (and
  # INFERENCE, if its inference network's parameters have other names).

  # The top-level parameters of the inference network q(z|x); every other parameter is the
  # generative model's. PIWAE (`bound_metrics`) trains the two with different targets.
  INFERENCE = ("encoder",)

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
    out = self.decode(z_KxBxZ.reshape(k * b, -1))
    log_px_KxB = self.decoder_dist.log_prob(out.reshape(k, b, *out.shape[1:]), x_Bx)
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
  return VAE(encoder=encoder, decoder=decoder, latents=cfg.latents,
             decoder_dist=decoder_dists.of(cfg))


def kl_weight(step: jax.Array | None, hp: hparams.Hparams) -> jax.Array:
  """beta, ramped linearly from 0 over the first kl_warmup_steps; evaluation (step None) uses
  the final weight, so test losses compare across the warm-up. The values come from `hp`."""
  beta, warmup = hp["objective.beta"], hp["objective.kl_warmup_steps"]
  if step is None:
    return beta
  # A warm-up of 0 steps is no ramp; the max only keeps the unused side of the where finite.
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  return beta * jnp.where(warmup > 0, ramp, 1.0)


def _split(params: Any, inference: tuple[str, ...]) -> tuple[dict, dict]:
  """(inference network's, generative model's) top-level parameters."""
  missing = sorted(set(inference) - set(params))
  if missing:
    raise ValueError(f"the model's INFERENCE names {missing}, not among its parameters "
                     f"{sorted(params)}")
  return ({k: v for k, v in params.items() if k in inference},
          {k: v for k, v in params.items() if k not in inference})


def bound_metrics(model: Any, params: Any, x_in: jax.Array, x: jax.Array, keys_B: jax.Array,
                  config: ml_collections.ConfigDict, hp: hparams.Hparams,
                  training: bool = True) -> forward.Metrics:
  """The multi-sample bounds of config.loss (one of BOUNDS), per example, in nats; for any
  model with the hooks of aejax.likelihood (`posterior`, `noise_size`, `log_prior`,
  `log_weights`) and, for 'piwae', INFERENCE. K = config.model.num_samples, M =
  config.model.num_bounds (1 but for 'miwae' and 'piwae'); the one estimator
  (likelihood.importance_log_weights) draws the M x K samples, sample m * K + k of each example
  from its own key, so every metric below scores the same samples. 'loss' is minus the bound
  trained; 'elbo' is the mean log weight (an unbiased estimate of the ELBO), 'iwae_bound'
  IWAE(M x K), the log of the mean weight.

  iwae:  IWAE(K) (Burda et al., 2015).
  miwae: MIWAE(M, K) (Rainforth et al., 2018): the mean of M IWAE(K) bounds ('miwae_bound').
  ciwae: CIWAE(beta) (Rainforth et al., 2018): beta * ELBO + (1 - beta) * IWAE(K) on the same
         K samples ('ciwae_bound'), beta = hp['objective.ciwae_beta'].
  piwae: PIWAE(M, K) (Rainforth et al., 2018): the generative model climbs IWAE(M x K) and the
         inference network MIWAE(M, K), both on the same M x K samples. The log weights are
         computed twice, once with the inference network's parameters (INFERENCE) under
         stop_gradient (the IWAE target reaches only the generative model) and once with the
         generative model's under stop_gradient (the MIWAE target reaches only the inference
         network). 'loss' is -IWAE(M x K) in value (the generative model's target, the
         tighter of the two) and the sum of both targets' negatives in gradient; 'miwae_bound'
         reports the inference network's. Evaluation (`training` False) computes one set.
  """
  k, m = config.model.num_samples, config.model.num_bounds
  log_weights = lambda p: likelihood.importance_log_weights(model, p, x_in, x, keys_B, m * k,
                                                            m * k)
  piwae_split = config.loss == "piwae" and training
  if piwae_split:
    sg = jax.lax.stop_gradient
    inference, generative = _split(params, model.INFERENCE)
    # Two sets of the same log weights: each target reaches only its own network.
    log_w_NxB = log_weights({**sg(inference), **generative})  # N = M x K.
    log_w_enc_MxKxB = log_weights({**inference, **sg(generative)}).reshape(m, k, -1)
  else:
    log_w_NxB = log_weights(params)
  metrics = {"elbo": jnp.mean(log_w_NxB, axis=0), "iwae_bound": losses.iwae_bound(log_w_NxB)}
  if config.loss == "iwae":
    metrics["loss"] = -metrics["iwae_bound"]
  elif config.loss == "ciwae":
    metrics["ciwae_bound"] = losses.ciwae_bound(log_w_NxB, hp["objective.ciwae_beta"])
    metrics["loss"] = -metrics["ciwae_bound"]
  elif config.loss == "miwae":
    metrics["miwae_bound"] = losses.miwae_bound(log_w_NxB.reshape(m, k, -1))
    metrics["loss"] = -metrics["miwae_bound"]
  elif config.loss == "piwae":
    metrics["miwae_bound"] = losses.miwae_bound(log_w_NxB.reshape(m, k, -1))
    metrics["loss"] = -metrics["iwae_bound"]
    if piwae_split:  # Adds the inference network's gradient and 0 to the value.
      miwae_B = losses.miwae_bound(log_w_enc_MxKxB)
      metrics["loss"] = metrics["loss"] - (miwae_B - sg(miwae_B))
  else:
    raise ValueError(f"config.loss={config.loss!r} is not one of {BOUNDS}")
  return metrics


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array, keys_B: jax.Array,
                config: ml_collections.ConfigDict, step: jax.Array | None, hp: hparams.Hparams,
                axis_name: str | None) -> forward.Metrics:
  """The model keeps the whole keys (the draws of a plain VAE do not depend on what else is on);
  the test NLL's samples come from keys folded off them."""
  del axis_name  # Every term is the example's own.
  if config.loss in BOUNDS:
    metrics = bound_metrics(model, params, x_in, x, keys_B, config, hp, step is not None)
  else:
    metrics = elbo(model, forward.outputs(model, params, x_in, keys_B), x)
    if hparams.structure(config)["kl_weighted"]:
      w = kl_weight(step, hp)
      metrics["loss"] = metrics["rec"] + w * metrics["kl"]
      metrics["kl_weight"] = jnp.broadcast_to(w, metrics["loss"].shape)
  if step is None and config.eval_num_samples:
    metrics.update(test_nll(model, params, x_in, x, keys_B, config))
  return metrics


def elbo(model: Any, outputs: dict[str, jax.Array], x: jax.Array) -> forward.Metrics:
  """The single-sample negative ELBO's terms with the analytic KL (losses.elbo_objective) of the
  model's outputs, scored against x by its decoder distribution."""
  return losses.elbo_objective(outputs, -model.decoder_dist.log_prob(outputs["logits"], x))


def test_nll(model: Any, params: Any, x_in: jax.Array, x: jax.Array, keys_B: jax.Array,
             config: ml_collections.ConfigDict) -> forward.Metrics:
  """The test NLL of every family with a likelihood, [B], in nats ('nll') and in bits per
  dimension ('nll_bits_per_dim'): the IWAE bound of config.eval_num_samples draws of the one
  estimator, from keys folded off the example's own."""
  log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x,
                                                sampling.fold_in(keys_B, 1),
                                                config.eval_num_samples, config.eval_sample_chunk)
  nll_B = -losses.iwae_bound(log_w_KxB)
  return {"nll": nll_B, "nll_bits_per_dim": losses.bits_per_dim(nll_B, x[0].size)}


def check(config: ml_collections.ConfigDict) -> str | None:
  """What the bounds allow: a family training with `bound_metrics` can return this too."""
  o, k, m, loss = config.objective, config.model.num_samples, config.model.num_bounds, config.loss
  if k > 1 and loss not in BOUNDS:
    return (f"config.model.num_samples={k} is the K of a multi-sample bound: use > 1 only with "
            f"a bound, not config.loss={loss!r}")
  if m > 1 and loss not in ("miwae", "piwae"):
    return (f"config.model.num_bounds={m} is the M of MIWAE and PIWAE: use > 1 only with "
            f"config.loss='miwae' or 'piwae'")
  if loss in BOUNDS and (o.beta != 1 or o.kl_warmup_steps):
    return (f"the {loss.upper()} bound has no KL weight; leave config.objective.beta=1 and "
            f"kl_warmup_steps=0")
  if loss != "ciwae" and o.ciwae_beta != 0:
    return (f"config.objective.ciwae_beta={o.ciwae_beta} weighs the ELBO in config.loss='ciwae' "
            f"only; set it to 0.0")
  if loss == "ciwae" and not 0 <= o.ciwae_beta <= 1:
    return f"config.objective.ciwae_beta={o.ciwae_beta} must be in [0, 1]"
  return None
