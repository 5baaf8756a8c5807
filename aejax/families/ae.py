"""The deterministic autoencoder: z = encoder(x), logits = decoder(z), a reconstruction loss and
optional penalties on the code (L1; the sparse AE's KL to a target mean activation)."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.models import factory

LOSSES = losses.RECONSTRUCTION
LIKELIHOOD = False
POOLED = ("activation",)  # The sparsity penalty's mean activation, pooled over the test split.
OWN_FIELDS = {"objective.l1_code": 0.0, "objective.sparsity_weight": 0.0}
MAIN_METRIC = "sq_err"  # Judged by its reconstruction.


class AE(nn.Module):
  encoder: nn.Module  # Must output `latents` features.
  decoder: nn.Module
  # Squashes the code, e.g. a sigmoid code whose mean activation a sparsity penalty targets.
  code_activation: Callable[[jax.Array], jax.Array] | None = None

  def encode(self, x_BxHxWxC: jax.Array) -> jax.Array:
    z_BxZ = self.encoder(x_BxHxWxC)
    return z_BxZ if self.code_activation is None else self.code_activation(z_BxZ)

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    return self.encode(x_BxHxWxC)

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    del stream  # Deterministic; the argument keeps one call signature for every family.
    z_BxZ = self.encode(x_BxHxWxC)
    return {"z": z_BxZ, "logits": self.decode(z_BxZ)}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> nn.Module:
  encoder, decoder = factory.encoder_decoder(cfg, cfg.latents, image_shape, dtype)
  return AE(encoder=encoder, decoder=decoder,
            code_activation=factory.CODE_ACTIVATIONS[cfg.code_activation])


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  del axis_name  # The sparsity penalty needs the whole batch: validation refuses pmap.
  terms = hparams.structure(config)
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = losses.ae_objective(outputs, x, config.loss)
  if terms["l1_code"]:
    metrics["l1_code"] = losses.l1_penalty(outputs["z"])
    metrics["loss"] = metrics["loss"] + hp["objective.l1_code"] * metrics["l1_code"]
  if terms["sparsity"]:
    metrics["kl_sparsity"] = losses.kl_sparsity(outputs["z"], config.objective.sparsity_target)
    metrics["loss"] = metrics["loss"] + hp["objective.sparsity_weight"] * metrics["kl_sparsity"]
    if not training:
      metrics["activation"] = outputs["z"].astype(jnp.float32)
  return metrics


def from_pooled(metrics: forward.Metrics, pooled: forward.Metrics, num_examples: jax.Array,
                config: ml_collections.ConfigDict, hp: hparams.Hparams) -> forward.Metrics:
  kl = losses.sparsity_of_mean(pooled["activation"] / num_examples,
                               config.objective.sparsity_target)
  # The loss summed each batch's own penalty; it takes the pooled one instead.
  loss = metrics["loss"] + hp["objective.sparsity_weight"] * (kl - metrics["kl_sparsity"])
  return {**metrics, "loss": loss, "kl_sparsity": kl}


def check(config: ml_collections.ConfigDict) -> str | None:
  # The KL sparsity penalty is a function of the whole batch's mean activations; under pmap each
  # device would see only its slice.
  if config.objective.sparsity_weight and config.parallel == "pmap":
    return "config.objective.sparsity_weight needs the whole batch; use config.parallel='mesh'"
  if config.objective.sparsity_weight and config.model.code_activation != "sigmoid":
    return ("config.objective.sparsity_weight needs activations in (0, 1); set "
            "config.model.code_activation='sigmoid'")
  return None
