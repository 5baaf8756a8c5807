"""The capacity-annealed beta-VAE (Burgess et al., 2018, eq. 8): the VAE's model
(families/vae.py) trained with reconstruction + gamma |KL - C|, the KL the training batch's mean
and C rising linearly from 0 to c_max over the first `capacity_steps` steps
(losses.capacity). As disentanglement_lib's AnnealedVAE (methods/unsupervised/vae.py), which the
study of Locatello et al. (2019) ran with gamma = 1000 and C reaching c_max after 100,000 steps."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.families import shared
from aejax.families import vae

LOSSES = ("elbo",)
LIKELIHOOD = True
POOLED = ()
OWN_FIELDS = {"objective.capacity_gamma": 0.0, "objective.capacity_max": 0.0,
              "objective.capacity_steps": 0}
MAIN_METRIC = vae.MAIN_METRIC
REPORTS = ("capacity",)  # C, the KL the training batches are pulled towards.
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.

create = vae.create


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """Training: rec + gamma |mean KL of the whole (global) batch - C(step)|, the second term the
  same for every example, so the batch's mean loss is the reference's (whose KL is the batch's
  mean before the |.|). `axis_name`: the pmap axis the KL's mean is pooled over. Evaluation gives
  the VAE's metrics: the term is a statistic of a batch, while evaluation sums per-image terms."""
  if not training:
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = vae.elbo(model, outputs, x)
  c = losses.capacity(step, hp["objective.capacity_max"], hp["objective.capacity_steps"])
  gap = jnp.abs(losses.batch_mean(metrics["kl"], axis_name) - c)
  metrics["capacity"] = jnp.broadcast_to(c, metrics["loss"].shape)
  metrics["loss"] = metrics["rec"] + hp["objective.capacity_gamma"] * gap
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  return shared.check_kl_reweighted(
      config, "annealed_vae", ("capacity_gamma", "capacity_max", "capacity_steps"),
      "weighs the KL by config.objective.capacity_gamma towards capacity_max", None)
