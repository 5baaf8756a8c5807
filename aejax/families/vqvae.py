"""The VQ-VAE (van den Oord et al., 2017): the encoder's output, cut into vectors of `code_dim`,
snaps to a learned codebook; a reconstruction loss plus the codebook and commitment terms, and
the codebook's usage."""

from typing import Any

import flax.linen as nn
import jax
import ml_collections

from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.models import factory
from aejax.models.vq import VectorQuantizer

LOSSES = losses.RECONSTRUCTION
LIKELIHOOD = False
POOLED = ("code_counts",)  # Usage is not additive: the test split's counts are pooled first.
OWN_FIELDS = {}
MAIN_METRIC = "loss"
REPORTS = ("code_perplexity",)  # How many codes the batches use.


class VQVAE(nn.Module):
  encoder: nn.Module  # Must output `latents` features, a multiple of code_dim.
  decoder: nn.Module
  codebook_size: int
  code_dim: int

  def setup(self):
    self.quantizer = VectorQuantizer(self.codebook_size, self.code_dim)

  def _quantize(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, ...]:
    z_e_BxL = self.encoder(x_BxHxWxC)
    z_e_BxNxD = z_e_BxL.reshape(z_e_BxL.shape[0], -1, self.code_dim)
    z_q_BxNxD, e_BxNxD, idx_BxN = self.quantizer(z_e_BxNxD)
    return z_q_BxNxD.reshape(z_e_BxL.shape), z_e_BxNxD, e_BxNxD, idx_BxN

  def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The quantised code [B, latents] (straight-through: the gradient reaches the encoder)."""
    return self._quantize(x_BxHxWxC)[0]

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    return self.encode(x_BxHxWxC)

  def decode(self, z_BxL: jax.Array) -> jax.Array:
    return self.decoder(z_BxL)

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    del stream  # Deterministic.
    z_BxL, z_e_BxNxD, e_BxNxD, idx_BxN = self._quantize(x_BxHxWxC)
    return {"z": z_BxL, "z_e": z_e_BxNxD, "codes": e_BxNxD, "indices": idx_BxN,
            "logits": self.decode(z_BxL)}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> nn.Module:
  encoder, decoder = factory.encoder_decoder(cfg, cfg.latents, image_shape, dtype)
  return VQVAE(encoder=encoder, decoder=decoder, codebook_size=cfg.codebook_size,
               code_dim=cfg.code_dim)


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """`axis_name`: the pmap axis the training batch's code usage pools over."""
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = losses.ae_objective(outputs, x, config.loss)
  metrics.update(losses.vq_terms(outputs["z_e"], outputs["codes"]))
  size = config.model.codebook_size
  if not training:
    metrics["code_counts"] = losses.code_counts(outputs["indices"], size)
  else:
    metrics.update(losses.code_usage(outputs["indices"], size, axis_name))
  metrics["loss"] = metrics["loss"] + metrics["codebook"] + hp["objective.commitment"] * (
      metrics["commitment"])
  return metrics


def from_pooled(metrics: forward.Metrics, pooled: forward.Metrics, num_examples: jax.Array,
                config: ml_collections.ConfigDict, hp: hparams.Hparams) -> forward.Metrics:
  del num_examples, config, hp  # Usage is a function of the pooled counts alone.
  return {**metrics, **losses.usage_of_counts(pooled["code_counts"])}


def check(config: ml_collections.ConfigDict) -> str | None:
  m = config.model
  if m.latents % m.code_dim:
    return (f"config.model.latents={m.latents} must be a multiple of config.model.code_dim="
            f"{m.code_dim} (the code is latents/code_dim vectors)")
  return None
