"""The Wasserstein autoencoder, WAE-MMD (Tolstikhin et al., 2018): a deterministic code, a
reconstruction loss, and lambda times the MMD (IMQ kernel, the unbiased U-statistic) between the
batch's codes and as many N(0, I) prior samples; images are sampled by decoding prior draws."""

from typing import Any

import jax
import ml_collections

from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import ae
from aejax.families import forward
from aejax.models import factory

LOSSES = losses.RECONSTRUCTION
LIKELIHOOD = False
POOLED = ()
OWN_FIELDS = {"objective.mmd_weight": 0.0}
MAIN_METRIC = "sq_err"  # Judged by its reconstruction.
REPORTS = ("mmd",)  # The MMD to the prior: the train log line and aejax.analyze show it.


class WAE(ae.AE):
  latents: int = 0  # The prior's dimension: the encoder's output size.

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """num codes [num, latents] from the N(0, I) prior."""
    return jax.random.normal(key, (num, self.latents))


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> WAE:
  encoder, decoder = factory.encoder_decoder(cfg, cfg.latents, image_shape, dtype)
  return WAE(encoder=encoder, decoder=decoder, latents=cfg.latents)


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """`axis_name`: the pmap axis the MMD's pairs range over (the whole batch)."""
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = losses.ae_objective(outputs, x, config.loss)
  if not training:
    # The MMD is a statistic of a batch's pairs: evaluation sums per-image terms over padded
    # batches, so the test metrics are the reconstruction's (the figures show the samples).
    return metrics
  z_BxZ = outputs["z"]
  # The prior draws come from the prior stream: the same draws however the batch is split, and
  # never the noise of another part of the step.
  prior_BxZ = sampling.normal(streams.prior, z_BxZ.shape)
  metrics["mmd"] = losses.mmd_imq(z_BxZ, prior_BxZ, axis_name)
  metrics["loss"] = metrics["loss"] + hp["objective.mmd_weight"] * metrics["mmd"]
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  if config.objective.mmd_weight < 0:
    return f"config.objective.mmd_weight={config.objective.mmd_weight} must be >= 0"
  if config.model.code_activation != "none":
    return ("config.model.code_activation must be 'none' for 'wae': the code matches an "
            "N(0, I) prior")
  if config.batch_size < 2:
    return "config.batch_size must be >= 2 for 'wae': the MMD's U-statistic needs two codes"
  return None
