"""The regularised autoencoder, RAE (Ghosh et al., 2020): a deterministic code, a reconstruction
loss, code_l2 * ||z||^2 / 2, and a decoder regulariser (objective.rae_reg): 'l2', weight decay on
the decoder's parameters, or 'gp', the squared Frobenius norm of the decoder's Jacobian at the
code. It has no prior: aejax.analyze samples from a Gaussian mixture fitted to the train codes
(ex-post density estimation, EX_POST_COMPONENTS)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import ae
from aejax.families import forward

LOSSES = losses.RECONSTRUCTION
LIKELIHOOD = False
POOLED = ()
_REGULARISERS = ("l2", "gp")
OWN_FIELDS = {"objective.code_l2": 0.0, "objective.decoder_reg": 0.0, "objective.rae_reg": "l2"}
MAIN_METRIC = "sq_err"  # Judged by its reconstruction.
EX_POST_COMPONENTS = 10  # The paper's mixture: 10 full-covariance components.

create = ae.create  # The AE's model: encode, code, decode; no prior.


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  del axis_name  # Every term is the example's own.
  outputs = forward.outputs(model, params, x_in, streams.posterior)
  metrics = losses.ae_objective(outputs, x, config.loss)
  z_BxZ = outputs["z"]
  metrics["code_l2"] = losses.code_l2(z_BxZ)
  metrics["loss"] = metrics["loss"] + hp["objective.code_l2"] * metrics["code_l2"]
  if hparams.structure(config)["decoder_reg"]:
    if config.objective.rae_reg == "l2":
      # A term of the parameters alone: every example carries it, so the batch mean is it.
      reg_B = jnp.broadcast_to(losses.params_l2(params["decoder"]), z_BxZ.shape[:1])
    else:
      # The decoder's output as the reconstruction loss sees it: the pixel means.
      def mean_image(z_Z):
        logits = model.apply({"params": params}, z_Z[None], method=model.decode)
        return jax.nn.sigmoid(logits.astype(jnp.float32)).reshape(-1)
      reg_B = losses.jacobian_sq_norm(mean_image, z_BxZ)
    metrics[f"decoder_{config.objective.rae_reg}"] = reg_B
    metrics["loss"] = metrics["loss"] + hp["objective.decoder_reg"] * reg_B
  return metrics


def check(config: ml_collections.ConfigDict) -> str | None:
  o = config.objective
  if o.rae_reg not in _REGULARISERS:
    return f"unknown config.objective.rae_reg={o.rae_reg!r}; use one of {_REGULARISERS}"
  for field in ("code_l2", "decoder_reg"):
    if o[field] < 0:
      return f"config.objective.{field}={o[field]} must be >= 0"
  return None
