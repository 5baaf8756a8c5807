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
from aejax import losses
from aejax import preprocess
from aejax import sampling
from aejax.errors import UserError

Metrics = dict[str, jax.Array]


def validate(config: ml_collections.ConfigDict) -> None:
  """Config combinations the objectives cannot honour, as one-line user errors."""
  o, m = config.objective, config.model
  if config.input.corruption not in preprocess.CORRUPTION:
    raise UserError(f"unknown config.input.corruption={config.input.corruption!r}; use one of "
                    f"{preprocess.CORRUPTION}")
  if config.input.corruption == "mask" and not 0 <= config.input.noise_level < 1:
    raise UserError(f"config.input.noise_level={config.input.noise_level} is a masking "
                    f"probability here; use a value in [0, 1)")
  if (o.l1_code or o.sparsity_weight) and m.name != "ae":
    raise UserError(f"config.objective.l1_code/sparsity_weight apply to model 'ae', not "
                    f"{m.name!r}; set them to 0")
  if o.sparsity_weight and m.code_activation != "sigmoid":
    raise UserError("config.objective.sparsity_weight needs activations in (0, 1); set "
                    "config.model.code_activation='sigmoid'")
  if not 0 < o.sparsity_target < 1:
    raise UserError(f"config.objective.sparsity_target={o.sparsity_target} must be in (0, 1)")
  if o.kl_warmup_steps < 0 or o.beta < 0:
    raise UserError("config.objective.beta and kl_warmup_steps must be >= 0")
  if m.num_samples < 1 or (m.num_samples > 1 and config.loss != "iwae"):
    raise UserError(f"config.model.num_samples={m.num_samples} is the IWAE's k: use >= 1, and "
                    f"> 1 only with config.loss='iwae'")
  if config.loss == "iwae" and (o.beta != 1 or o.kl_warmup_steps):
    raise UserError("the IWAE bound has no KL weight; leave config.objective.beta=1 and "
                    "kl_warmup_steps=0")
  if config.eval_num_samples < 0 or config.eval_sample_chunk < 1:
    raise UserError("config.eval_num_samples must be >= 0 and eval_sample_chunk >= 1")
  if config.eval_num_samples and m.name != "vae":
    raise UserError(f"config.eval_num_samples estimates a VAE's NLL; model {m.name!r} has no "
                    f"likelihood: set it to 0")


def kl_weight(objective: ml_collections.ConfigDict, step: jax.Array | None,
              hp: hparams.Hparams | None = None) -> jax.Array:
  """beta, ramped linearly from 0 over the first kl_warmup_steps; evaluation (step None) uses
  the final weight, so test losses compare across the warm-up. The values come from `hp`
  (arrays; default: the config's)."""
  if hp is None:
    beta, warmup = (jnp.asarray(v, jnp.float32)
                    for v in (objective.beta, objective.kl_warmup_steps))
  else:
    beta, warmup = hp["objective.beta"], hp["objective.kl_warmup_steps"]
  if step is None:
    return beta
  # A warm-up of 0 steps is no ramp; the max only keeps the unused branch finite.
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  return beta * jnp.where(warmup > 0, ramp, 1.0)


def importance_log_weights(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                           keys_B: jax.Array, num_samples: int, chunk: int) -> jax.Array:
  """[K, B] log weights of K posterior samples, decoded `chunk` samples at a time.

  The encoder runs once; each chunk decodes chunk x B images, so a large K (test NLL with
  K = 5000) needs the memory of `chunk` samples, not of K. Example b's samples come from its own
  key keys_B[b], so they do not depend on how the batch is split across devices.
  """
  variables = {"params": params}
  keys_B = sampling.as_example_keys(keys_B, x.shape[0])
  mean_BxZ, logvar_BxZ = (v.astype(jnp.float32)
                          for v in model.apply(variables, x_in, method="encode"))
  chunk = min(chunk, num_samples)
  num_chunks = -(-num_samples // chunk)

  def one_chunk(i):
    eps_BxCxZ = sampling.normal(sampling.fold_in(keys_B, i), (chunk, mean_BxZ.shape[-1]))
    eps_CxBxZ = jnp.swapaxes(eps_BxCxZ, 0, 1)
    z_CxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps_CxBxZ
    logits = model.apply(variables, z_CxBxZ.reshape(-1, z_CxBxZ.shape[-1]), method="decode")
    logits_CxBx = logits.astype(jnp.float32).reshape(chunk, *x.shape)
    return losses.importance_log_weights(logits_CxBx, x, z_CxBxZ, mean_BxZ, logvar_BxZ)

  if num_chunks == 1:
    return one_chunk(0)
  log_w_NxCxB = jax.lax.map(one_chunk, jnp.arange(num_chunks))
  return log_w_NxCxB.reshape(-1, x.shape[0])[:num_samples]


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array, keys_B: jax.Array,
                config: ml_collections.ConfigDict, step: jax.Array | None,
                hp: hparams.Hparams | None = None) -> Metrics:
  """Scores model(x_in) against the target x. `keys_B`: one key per example; `step` is the
  train step (None: evaluation). The weights come from `hp` (default: the config's); which
  terms exist, from the config (hparams.structure)."""
  family, loss, o = config.model.name, config.loss, config.objective
  hp = hparams.of(config) if hp is None else hp
  # The model keeps the whole keys (the draws of a plain VAE do not depend on what else is on);
  # the test NLL's samples come from keys folded off them.
  keys_B = sampling.as_example_keys(keys_B, x.shape[0])
  rng_model, rng_eval = keys_B, sampling.fold_in(keys_B, 1)
  if family == "vae" and loss == "iwae":
    log_w_KxB = importance_log_weights(model, params, x_in, x, rng_model,
                                       config.model.num_samples, config.model.num_samples)
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
      if o.beta != 1 or o.kl_warmup_steps:
        w = kl_weight(o, step, hp)
        metrics["loss"] = metrics["rec"] + w * metrics["kl"]
        metrics["kl_weight"] = jnp.broadcast_to(w, metrics["loss"].shape)
    elif family == "vqvae":
      metrics = losses.ae_objective(outputs, x, loss)
      metrics.update(losses.vq_terms(outputs["z_e"], outputs["codes"]))
      metrics.update(losses.code_usage(outputs["indices"], config.model.codebook_size))
      metrics["loss"] = metrics["loss"] + metrics["codebook"] + hp["objective.commitment"] * (
          metrics["commitment"])
    else:
      metrics = losses.ae_objective(outputs, x, loss)
      if o.l1_code:
        metrics["l1_code"] = losses.l1_penalty(outputs["z"])
        metrics["loss"] = metrics["loss"] + hp["objective.l1_code"] * metrics["l1_code"]
      if o.sparsity_weight:
        metrics["kl_sparsity"] = losses.kl_sparsity(outputs["z"], o.sparsity_target)
        metrics["loss"] = metrics["loss"] + hp["objective.sparsity_weight"] * metrics[
            "kl_sparsity"]
  if step is None and family == "vae" and config.eval_num_samples:
    log_w_KxB = importance_log_weights(model, params, x_in, x, rng_eval,
                                       config.eval_num_samples, config.eval_sample_chunk)
    metrics["nll"] = -losses.iwae_bound(log_w_KxB)
  return metrics
