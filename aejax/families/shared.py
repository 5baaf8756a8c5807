"""What any family with a likelihood may share, whatever its model: the KL weight and its warm-up,
the multi-sample bounds (`bound_metrics`) and the test NLL. None of it names a family; a model
qualifies by having the hooks of aejax.likelihood (`posterior`, `noise_size`, `log_prior`,
`log_weights`; see families.vae.VAE)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import sampling
from aejax.families import forward

# The multi-sample bounds of `bound_metrics`, on the log weights of aejax.likelihood.
BOUNDS = ("iwae", "miwae", "piwae", "ciwae")


def kl_weight(step: jax.Array | None, hp: hparams.Hparams, training: bool) -> jax.Array:
  """beta, ramped linearly from 0 over the first kl_warmup_steps of training; evaluation uses the
  final weight, so test losses compare across the warm-up. The values come from `hp`."""
  beta, warmup = hp["objective.beta"], hp["objective.kl_warmup_steps"]
  if not training:
    return beta
  # A warm-up of 0 steps is no ramp; the max only keeps the unused side of the where finite.
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  return beta * jnp.where(warmup > 0, ramp, 1.0)


def weigh_kl(metrics: forward.Metrics, config: ml_collections.ConfigDict,
             step: jax.Array | None, hp: hparams.Hparams, training: bool) -> forward.Metrics:
  """metrics' 'loss' as rec + kl_weight x kl, with 'kl_weight' reported, where the config
  weighs the KL (hparams.structure); otherwise the metrics as they are."""
  if not hparams.structure(config)["kl_weighted"]:
    return metrics
  w = kl_weight(step, hp, training)
  return {**metrics, "loss": metrics["rec"] + w * metrics["kl"],
          "kl_weight": jnp.broadcast_to(w, metrics["loss"].shape)}


def sampled_kl_elbo(model: Any, outputs: dict[str, jax.Array], x: jax.Array, log_q: jax.Array,
                    config: ml_collections.ConfigDict, step: jax.Array | None,
                    hp: hparams.Hparams, training: bool) -> forward.Metrics:
  """The single-sample ELBO's terms where the KL has no closed form: estimated at the posterior
  sample as log q(z|x) - log p(z) (`log_q` and outputs['log_prior'], [B]), the reconstruction
  -log p(x|z) by the model's decoder distribution; KL-weighted as weigh_kl does."""
  rec = -model.decoder_dist.log_prob(outputs["logits"], x)
  kl = log_q - outputs["log_prior"]
  metrics = {"loss": rec + kl, "rec": rec, "kl": kl, "elbo": -(rec + kl)}
  return weigh_kl(metrics, config, step, hp, training)


def _split(params: Any, inference: tuple[str, ...]) -> tuple[dict, dict]:
  """(inference network's, generative model's) top-level parameters."""
  missing = sorted(set(inference) - set(params))
  if missing:
    raise ValueError(f"the model's INFERENCE names {missing}, not among its parameters "
                     f"{sorted(params)}")
  return ({k: v for k, v in params.items() if k in inference},
          {k: v for k, v in params.items() if k not in inference})


def bound_metrics(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                  streams: sampling.Streams, config: ml_collections.ConfigDict,
                  hp: hparams.Hparams, training: bool) -> forward.Metrics:
  """The multi-sample bounds of config.loss (one of BOUNDS), per example, in nats; for any
  model with the hooks of aejax.likelihood (`posterior`, `noise_size`, `log_prior`,
  `log_weights`) and, for 'piwae', INFERENCE. K = config.model.num_samples, M =
  config.model.num_bounds (1 but for 'miwae' and 'piwae'); the one estimator
  (likelihood.importance_log_weights) draws the M x K samples from the posterior stream, sample
  m * K + k from the stream folded with m * K + k, so every metric below scores the same samples.
  'loss' is minus the bound trained; 'elbo' is the mean log weight (an unbiased estimate of the
  ELBO), 'iwae_bound' IWAE(M x K), the log of the mean weight.

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
  log_weights = lambda p: likelihood.importance_log_weights(model, p, x_in, x, streams.posterior,
                                                            m * k, m * k)
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


def test_nll(model: Any, params: Any, x_in: jax.Array, x: jax.Array, streams: sampling.Streams,
             config: ml_collections.ConfigDict) -> forward.Metrics:
  """The test NLL of every family with a likelihood, [B], in nats ('nll') and in bits per
  dimension ('nll_bits_per_dim'): the IWAE bound of config.eval_num_samples draws of the one
  estimator, from keys folded off the posterior stream (objectives.per_example adds it to every
  such family's evaluation)."""
  log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x,
                                                sampling.fold_in(streams.posterior, 1),
                                                config.eval_num_samples, config.eval_sample_chunk)
  nll_B = -losses.iwae_bound(log_w_KxB)
  return {"nll": nll_B, "nll_bits_per_dim": losses.bits_per_dim(nll_B, x[0].size)}


def check_kl_reweighted(config: ml_collections.ConfigDict, family: str, weights: tuple[str, ...],
                        how: str, batch_statistic: str | None) -> str | None:
  """What a family that replaces or adds to the ELBO's KL term with weights of its own
  (`config.objective.<weights>`) refuses: a negative weight; the VAE's KL weighting (beta, its
  warm-up) beside its own (`how`: what it does instead); where its term is a statistic of the
  training batch (`batch_statistic`: which), a batch of 1."""
  o = config.objective
  for name in weights:
    if o[name] < 0:
      return f"config.objective.{name}={o[name]} must be >= 0"
  if o.beta != 1 or o.kl_warmup_steps:
    return f"'{family}' {how}; leave config.objective.beta=1 and kl_warmup_steps=0"
  if batch_statistic and config.batch_size < 2:
    return f"config.batch_size must be >= 2 for '{family}': {batch_statistic}"
  return None
