"""DIP-VAE (Kumar et al., 2018): the VAE's model (families/vae.py) trained with its ELBO plus a
penalty driving a covariance of the code towards the identity, lambda_od sum_{i != j} Cov_ij^2 +
lambda_d sum_i (Cov_ii - 1)^2 (losses.dip_penalty), the covariance estimated on the training
batch (losses.latent_covariance): of the encoder means for DIP-VAE-I, of the aggregate posterior
(the means' covariance plus the mean posterior variance) for DIP-VAE-II. As disentanglement_lib's
DIPVAE (methods/unsupervised/vae.py), which the study of Locatello et al. (2019) ran with
lambda_d = 10 lambda_od for I and lambda_d = lambda_od for II."""

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
OWN_FIELDS = {"objective.dip_type": "i", "objective.dip_lambda_od": 0.0,
              "objective.dip_lambda_d": 0.0}
MAIN_METRIC = vae.MAIN_METRIC
REPORTS = ("dip",)  # The covariance penalty of the training batches.
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.

_TYPES = ("i", "ii")

create = vae.create


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """Training: -ELBO + the penalty of the whole (global) batch's covariance, the same for every
  example, so the batch's mean loss is the reference's. `axis_name`: the pmap axis the moments
  are pooled over. Evaluation gives the VAE's metrics: the penalty is a statistic of a batch,
  while evaluation sums per-image terms."""
  if not training:
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = vae.elbo(model, outputs, x)
  logvar = outputs["logvar"] if config.objective.dip_type == "ii" else None
  cov_ZxZ = losses.latent_covariance(outputs["mean"], logvar, axis_name)
  dip = losses.dip_penalty(cov_ZxZ, hp["objective.dip_lambda_od"], hp["objective.dip_lambda_d"])
  metrics["dip"] = jnp.broadcast_to(dip, metrics["loss"].shape)
  metrics["loss"] = metrics["loss"] + metrics["dip"]
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  o = config.objective
  if o.dip_type not in _TYPES:
    return (f"config.objective.dip_type={o.dip_type!r} is not a DIP-VAE variant; use 'i' "
            f"(covariance of the encoder means) or 'ii' (of the aggregate posterior)")
  return shared.check_kl_reweighted(config, "dip_vae", ("dip_lambda_od", "dip_lambda_d"),
                                    "adds its covariance penalty to the ELBO",
                                    "the covariance is estimated from the batch")
