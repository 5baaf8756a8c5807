"""beta-TCVAE (Chen et al., 2018): the VAE's model (families/vae.py) trained with its ELBO's KL
term split into index-code mutual information, total correlation and dimension-wise KL,
weighted alpha, beta, gamma (alpha = beta = gamma = 1 is the ELBO), each estimated from the
training batch by minibatch weighted sampling (losses.kl_parts)."""

from typing import Any

import jax
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
OWN_FIELDS = {"objective.tc_alpha": 1.0, "objective.tc_beta": 1.0, "objective.tc_gamma": 1.0}
MAIN_METRIC = vae.MAIN_METRIC
REPORTS = ("mi", "tc", "dwkl")  # The KL's parts of the training batches.
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.

create = vae.create


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """Training: reconstruction + alpha mi + beta tc + gamma dwkl, the parts estimated against the
  whole (global) batch's posteriors with N = the training split's size (hp[NUM_TRAIN], from the
  trainer: the aggregate posterior is over that split). `axis_name`: the pmap axis the batch's
  posteriors are gathered over.

  Evaluation (`training` False) gives the VAE's metrics: the parts are statistics of a batch, while
  evaluation sums per-image terms over padded batches, so the test loss is the negative ELBO
  (rec + kl, analytic KL) with the test nll where config.eval_num_samples is set;
  aejax.analyze measures the parts of the test split's aggregate posterior."""
  if not training:
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = vae.elbo(model, outputs, x)
  parts = losses.batch_kl_parts(outputs["z"], outputs["mean"], outputs["logvar"],
                                hp[hparams.NUM_TRAIN], axis_name)
  metrics.update(parts)
  metrics["loss"] = (metrics["rec"] + hp["objective.tc_alpha"] * parts["mi"]
                     + hp["objective.tc_beta"] * parts["tc"]
                     + hp["objective.tc_gamma"] * parts["dwkl"])
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  return shared.check_kl_reweighted(
      config, "beta_tcvae", ("tc_alpha", "tc_beta", "tc_gamma"),
      "weighs the KL's parts by config.objective.tc_alpha, tc_beta and tc_gamma",
      "the aggregate posterior is estimated from the batch")
