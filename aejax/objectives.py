"""config -> per-example metrics of a batch: which forward pass, which terms, which weights.

`losses` holds the math of each term; this module composes them for the family and loss the
config names, with the weights of `config.objective`. Everything is per example ([B] arrays,
'loss' the objective), so the train step averages it and evaluation sums it under a mask.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import sampling

Metrics = dict[str, jax.Array]
# Evaluation-only per-example parts of batch statistics: [B, ...] arrays to sum, not average.
POOLED = ("code_counts", "activation")


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
                axis_name: str | None = None) -> Metrics:
  """Scores model(x_in) against the target x. `keys_B`: one key per example; `step` is the
  train step (None: evaluation); `axis_name`: the pmap axis that batch statistics pool over. The
  weights come from `hp` (hparams.of); which terms exist, from hparams.structure alone (runs that
  differ there cannot share a program, so the same rule groups them).

  Evaluation also returns the additive parts of the batch statistics, per example (POOLED,
  [B, ...]), so that `from_sums` derives them once over the whole test split.
  """
  family, loss, terms = config.model.name, config.loss, hparams.structure(config)
  # The model keeps the whole keys (the draws of a plain VAE do not depend on what else is on);
  # the test NLL's samples come from keys folded off them.
  keys_B = sampling.as_example_keys(keys_B, x.shape[0])
  rng_model, rng_eval = keys_B, sampling.fold_in(keys_B, 1)
  if family == "vae" and loss == "iwae":
    log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x, rng_model,
                                                  config.model.num_samples,
                                                  config.model.num_samples)
    bound = losses.iwae_bound(log_w_KxB)
    metrics = {"loss": -bound, "iwae_bound": bound, "elbo": jnp.mean(log_w_KxB, axis=0)}
  else:
    outputs = model.apply({"params": params}, x_in, rng_model)
    # A bf16 model's outputs are scored in float32: per-pixel terms summed over 784 pixels (and
    # then averaged over the batch) would lose whole nats in bf16.
    outputs = jax.tree.map(
        lambda v: v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v, outputs)
    if family == "vae":
      metrics = losses.elbo_objective(outputs, x)
      if terms["kl_weighted"]:
        w = kl_weight(step, hp)
        metrics["loss"] = metrics["rec"] + w * metrics["kl"]
        metrics["kl_weight"] = jnp.broadcast_to(w, metrics["loss"].shape)
    elif family == "vqvae":
      metrics = losses.ae_objective(outputs, x, loss)
      metrics.update(losses.vq_terms(outputs["z_e"], outputs["codes"]))
      if step is None:
        metrics["code_counts"] = losses.code_counts(outputs["indices"], config.model.codebook_size)
      else:
        metrics.update(losses.code_usage(outputs["indices"], config.model.codebook_size,
                                         axis_name))
      metrics["loss"] = metrics["loss"] + metrics["codebook"] + hp["objective.commitment"] * (
          metrics["commitment"])
    else:
      metrics = losses.ae_objective(outputs, x, loss)
      if terms["l1_code"]:
        metrics["l1_code"] = losses.l1_penalty(outputs["z"])
        metrics["loss"] = metrics["loss"] + hp["objective.l1_code"] * metrics["l1_code"]
      if terms["sparsity"]:
        metrics["kl_sparsity"] = losses.kl_sparsity(outputs["z"],
                                                    config.objective.sparsity_target)
        metrics["loss"] = metrics["loss"] + hp["objective.sparsity_weight"] * metrics[
            "kl_sparsity"]
        if step is None:
          metrics["activation"] = outputs["z"].astype(jnp.float32)
  if step is None and family == "vae" and config.eval_num_samples:
    log_w_KxB = likelihood.importance_log_weights(model, params, x_in, x, rng_eval,
                                                  config.eval_num_samples,
                                                  config.eval_sample_chunk)
    metrics["nll"] = -losses.iwae_bound(log_w_KxB)
  return metrics


def from_sums(sums: Metrics, num_examples: jax.Array, config: ml_collections.ConfigDict,
              hp: hparams.Hparams) -> Metrics:
  """Evaluation's sums over the unmasked test images -> per-image means, with the batch
  statistics derived once from their pooled parts: what a single batch of the whole split would
  report, whatever eval_batch_size and padding."""
  sums = dict(sums)
  counts_K, activation_Z = sums.pop("code_counts", None), sums.pop("activation", None)
  metrics = {k: v / num_examples for k, v in sums.items()}
  if counts_K is not None:
    metrics.update(losses.usage_of_counts(counts_K))
  if activation_Z is not None:
    kl = losses.sparsity_of_mean(activation_Z / num_examples, config.objective.sparsity_target)
    # The loss summed each batch's own penalty; it takes the pooled one instead.
    metrics["loss"] = metrics["loss"] + hp["objective.sparsity_weight"] * (
        kl - metrics["kl_sparsity"])
    metrics["kl_sparsity"] = kl
  return metrics
