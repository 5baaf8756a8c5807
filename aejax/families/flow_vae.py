"""The VAE with a normalizing-flow posterior: z_0 ~ q_0(z|x) = N(mean, diag(exp(logvar))), the
VAE's, then z_L = f_L(...f_1(z_0)) through config.model.flow_length steps of config.model.flow
(aejax/models/flows.py):

  planar, radial  Rezende & Mohamed (2015): each step's parameters computed by the encoder per
                  image (amortised, as in that paper);
  iaf             Kingma et al. (2016): inverse autoregressive flow, each step a MADE of the code
                  with hidden widths config.model.flow_hidden and the encoder's context h (as
                  wide as the first of them), the variables' order reversed between steps.

log q(z_L|x) = log q_0(z_0|x) - sum_l log |det df_l/dz_{l-1}|, so the single-sample ELBO, the
VAE's bounds and the one NLL estimator (aejax.likelihood) take the flow through this model's
`log_weights`; the prior is N(0, I) and the decoder the VAE's. The KL is estimated at the
sample, log q(z_L|x) - log p(z_L). `encode` gives q_0's (mean, logvar); `code`, the
representation aejax.analyze scores, is the flow applied to q_0's mean.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import decoder_dists
from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.families import shared
from aejax.families import vae
from aejax.models import factory
from aejax.models import flows

LOSSES = vae.LOSSES
LIKELIHOOD = True
POOLED = ()
_FLOWS = ("planar", "radial", "iaf")
# The VAE's fields are this family's too; other families leave the flow off.
OWN_FIELDS = {**vae.OWN_FIELDS, "model.flow": "none", "model.flow_length": 0,
              "model.flow_hidden": ()}
MAIN_METRIC = vae.MAIN_METRIC


def _flow_features(flow: str, length: int, latents: int, hidden: tuple[int, ...]) -> int:
  """What the encoder computes for the flow beside q_0's mean and log-variance, per image."""
  if flow == "planar":
    return length * (2 * latents + 1)  # u, w, b per step.
  if flow == "radial":
    return length * (latents + 2)  # z0, alpha, beta per step.
  return hidden[0] if hidden else 0  # IAF's context h.


class FlowVAE(vae.VAE):
  flow: str
  flow_length: int
  flow_hidden: tuple[int, ...]

  def setup(self):
    if self.flow == "iaf":
      self.iaf_steps = [flows.IAFStep(self.latents, tuple(self.flow_hidden), reverse=l % 2 == 1)
                        for l in range(self.flow_length)]

  def _encoder_outputs(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    h_BxF = self.encoder(x_BxHxWxC)
    z = self.latents
    return h_BxF[:, :z], h_BxF[:, z:2 * z], h_BxF[:, 2 * z:]

  def encode(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q_0's (mean, logvar), each [B, Z]."""
    return self._encoder_outputs(x_BxHxWxC)[:2]

  def flow_through(self, z_NxBxZ: jax.Array, flow_BxP: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(f_L(...f_1(z_0)), sum_l log |det|): [N, B, Z] and [N, B], for N codes of each of B
    images, the images' flow parameters (or IAF context) flow_BxP."""
    n, z = z_NxBxZ.shape[0], self.latents
    log_det_NxB = jnp.zeros(z_NxBxZ.shape[:-1], jnp.float32)
    if self.flow == "iaf":
      h = jnp.broadcast_to(flow_BxP, (n, *flow_BxP.shape)) if flow_BxP.shape[-1] else None
      for step in self.iaf_steps:
        z_NxBxZ, log_det = step(z_NxBxZ, h)
        log_det_NxB = log_det_NxB + log_det
      return z_NxBxZ, log_det_NxB
    per_step = flow_BxP.shape[-1] // self.flow_length
    for l in range(self.flow_length):
      p_1xBxP = flow_BxP[None, :, l * per_step:(l + 1) * per_step]
      p_NxBxP = jnp.broadcast_to(p_1xBxP, (n, *p_1xBxP.shape[1:]))
      if self.flow == "planar":
        z_NxBxZ, log_det = flows.planar(z_NxBxZ, p_NxBxP[..., :z], p_NxBxP[..., z:2 * z],
                                        p_NxBxP[..., 2 * z])
      else:
        z_NxBxZ, log_det = flows.radial(z_NxBxZ, p_NxBxP[..., :z], p_NxBxP[..., z],
                                        p_NxBxP[..., z + 1])
      log_det_NxB = log_det_NxB + log_det
    return z_NxBxZ, log_det_NxB

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The flow at q_0's mean: the code of x the decoder decodes without noise."""
    mean_BxZ, _, flow_BxP = self._encoder_outputs(x_BxHxWxC)
    return self.flow_through(mean_BxZ[None], flow_BxP)[0][0]

  def posterior(self, x_BxHxWxC: jax.Array) -> Any:
    """q_0's (mean, logvar) and the flow's parameters, in float32."""
    return tuple(a.astype(jnp.float32) for a in self._encoder_outputs(x_BxHxWxC))

  def log_weights(self, posterior: Any, eps_KxBxE: jax.Array, x_Bx: jax.Array) -> jax.Array:
    """log p(x|z_L) + log p(z_L) - log q(z_L|x), log q(z_L|x) = log q_0(z_0|x) - sum log |det|:
    [K, B]."""
    mean_BxZ, logvar_BxZ, flow_BxP = posterior
    z0_KxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps_KxBxE
    z_KxBxZ, log_det_KxB = self.flow_through(z0_KxBxZ, flow_BxP)
    k, b = z_KxBxZ.shape[:2]
    out = self.decode(z_KxBxZ.reshape(k * b, -1))
    log_px_KxB = self.decoder_dist.log_prob(out.reshape(k, b, *out.shape[1:]), x_Bx)
    log_qz_KxB = (losses.log_normal_diag(z0_KxBxZ, mean_BxZ[None], logvar_BxZ[None])
                  - log_det_KxB)
    return log_px_KxB + self.log_prior(z_KxBxZ) - log_qz_KxB

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    """The sample z_L, its decoding, and log q(z_L|x) and log p(z_L) for the KL at the sample."""
    mean_BxZ, logvar_BxZ, flow_BxP = self._encoder_outputs(x_BxHxWxC)
    eps_BxZ = sampling.normal(stream, mean_BxZ.shape, mean_BxZ.dtype)
    z0_BxZ = mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
    z_1xBxZ, log_det_1xB = self.flow_through(z0_BxZ[None], flow_BxP)
    log_q_B = losses.log_normal_diag(z0_BxZ, mean_BxZ, logvar_BxZ) - log_det_1xB[0]
    return {"z": z_1xBxZ[0], "mean": mean_BxZ, "logvar": logvar_BxZ, "log_q": log_q_B,
            "log_prior": self.log_prior(z_1xBxZ)[0], "logits": self.decode(z_1xBxZ[0])}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> FlowVAE:
  features = 2 * cfg.latents + _flow_features(cfg.flow, cfg.flow_length, cfg.latents,
                                              tuple(cfg.flow_hidden))
  encoder, decoder = factory.encoder_decoder(cfg, features, image_shape, dtype)
  return FlowVAE(encoder=encoder, decoder=decoder, latents=cfg.latents,
                 decoder_dist=decoder_dists.of(cfg), flow=cfg.flow, flow_length=cfg.flow_length,
                 flow_hidden=tuple(cfg.flow_hidden))


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """The ELBO with the KL estimated at the flow's sample, log q(z_L|x) - log p(z_L); the bounds
  are the VAE's, the model's log weights taking the flow."""
  if config.loss != "elbo":
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  out = forward.outputs(model, params, x_in, streams.posterior)
  return shared.sampled_kl_elbo(model, out, x, out["log_q"], config, step, hp, training)


def check(config: ml_collections.ConfigDict) -> str | None:
  m = config.model
  if m.flow not in _FLOWS:
    return f"config.model.flow={m.flow!r} must be one of {_FLOWS} for 'flow_vae'"
  if m.flow_length < 1:
    return (f"config.model.flow_length={m.flow_length} must be >= 1: the number of "
            f"{m.flow} steps")
  if m.flow != "iaf" and tuple(m.flow_hidden):
    return (f"config.model.flow_hidden={tuple(m.flow_hidden)} sets IAF's MADE widths; leave it "
            f"() with config.model.flow={m.flow!r}")
  if any(w < 1 for w in m.flow_hidden):
    return f"config.model.flow_hidden={tuple(m.flow_hidden)} must hold positive widths"
  return vae.check(config)
