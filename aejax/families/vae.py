"""The VAE: diagonal Gaussian posterior q(z|x), N(0, I) prior, a decoder distribution p(x|z) of
aejax.decoder_dists (Bernoulli, Gaussian or discretised logistic); trained with
the (beta-weighted) ELBO or a multi-sample bound (IWAE, MIWAE, PIWAE, CIWAE:
`shared.bound_metrics`),
its NLL estimated by aejax.likelihood."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aejax import decoder_dists
from aejax import hparams
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.families import shared
from aejax.models import factory

LOSSES = ("elbo", *shared.BOUNDS)
LIKELIHOOD = True
POOLED = ()
OWN_FIELDS = {"model.num_samples": 1, "model.num_bounds": 1, "objective.ciwae_beta": 0.0}
MAIN_METRIC = "elbo"  # Judged by its bound.
DIAGONAL_GAUSSIAN_POSTERIOR = True  # aejax.analyze reports its KL parts.


class VAE(nn.Module):
  encoder: nn.Module  # Must output 2 * latents features: the mean and the log-variance.
  decoder: nn.Module
  latents: int
  decoder_dist: decoder_dists.DecoderDist  # p(x|z): what the decoder's outputs parameterise.

  def encode(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    h_Bx2Z = self.encoder(x_BxHxWxC)
    mean_BxZ, logvar_BxZ = jnp.split(h_Bx2Z, 2, axis=-1)
    return mean_BxZ, logvar_BxZ

  def code(self, x_BxHxWxC: jax.Array) -> jax.Array:
    """The posterior mean."""
    return self.encode(x_BxHxWxC)[0]

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Codes [num, latents] drawn from the prior N(0, I); decode them for images."""
    return jax.random.normal(key, (num, self.latents))

  # The hooks of aejax.likelihood, the one NLL estimator: a family with another prior overrides
  # log_prior; one with another posterior or more stochastic layers overrides all four (and
  # INFERENCE, if its inference network's parameters have other names).

  # The top-level parameters of the inference network q(z|x); every other parameter is the
  # generative model's. PIWAE (`shared.bound_metrics`) trains the two with different targets.
  INFERENCE = ("encoder",)

  @property
  def noise_size(self) -> int:
    """The standard-normal draws one posterior sample takes."""
    return self.latents

  def posterior(self, x_BxHxWxC: jax.Array) -> Any:
    """What the encoder computes once per image (its posterior's parameters), in float32."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    return mean_BxZ.astype(jnp.float32), logvar_BxZ.astype(jnp.float32)

  def log_prior(self, z_KxBxZ: jax.Array) -> jax.Array:
    """log p(z): [K, B]."""
    zeros_1x1xZ = jnp.zeros((1, 1, z_KxBxZ.shape[-1]), z_KxBxZ.dtype)
    return losses.log_normal_diag(z_KxBxZ, zeros_1x1xZ, zeros_1x1xZ)

  def log_weights(self, posterior: Any, eps_KxBxE: jax.Array, x_Bx: jax.Array) -> jax.Array:
    """log p(x|z) + log p(z) - log q(z|x) of the K posterior samples the draws eps make: [K, B].
    The reparameterised samples carry gradients to the encoder and the decoder."""
    mean_BxZ, logvar_BxZ = posterior
    z_KxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps_KxBxE
    k, b = z_KxBxZ.shape[:2]
    out = self.decode(z_KxBxZ.reshape(k * b, -1))
    log_px_KxB = self.decoder_dist.log_prob(out.reshape(k, b, *out.shape[1:]), x_Bx)
    log_qz_KxB = losses.log_normal_diag(z_KxBxZ, mean_BxZ[None], logvar_BxZ[None])
    return log_px_KxB + self.log_prior(z_KxBxZ) - log_qz_KxB

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    """`stream`: the batch's posterior noise (aejax/sampling.py)."""
    mean_BxZ, logvar_BxZ = self.encode(x_BxHxWxC)
    # Reparameterisation: the sample is a differentiable function of (mean, logvar).
    eps_BxZ = sampling.normal(stream, mean_BxZ.shape, mean_BxZ.dtype)
    z_BxZ = mean_BxZ + jnp.exp(0.5 * logvar_BxZ) * eps_BxZ
    return {"z": z_BxZ, "mean": mean_BxZ, "logvar": logvar_BxZ,
            "logits": self.decode(z_BxZ)}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> nn.Module:
  encoder, decoder = factory.encoder_decoder(cfg, 2 * cfg.latents, image_shape, dtype)
  return VAE(encoder=encoder, decoder=decoder, latents=cfg.latents,
             decoder_dist=decoder_dists.of(cfg))


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """The ELBO (KL-weighted where the config says) or a multi-sample bound (shared), on the
  posterior stream's draws."""
  del axis_name  # Every term is the example's own.
  if config.loss in shared.BOUNDS:
    return shared.bound_metrics(model, params, x_in, x, streams, config, hp, training)
  metrics = elbo(model, forward.outputs(model, params, x_in, streams.posterior), x)
  return shared.weigh_kl(metrics, config, step, hp, training)


def elbo(model: Any, outputs: dict[str, jax.Array], x: jax.Array) -> forward.Metrics:
  """The single-sample negative ELBO's terms with the analytic KL (losses.elbo_objective) of the
  model's outputs, scored against x by its decoder distribution."""
  return losses.elbo_objective(outputs, -model.decoder_dist.log_prob(outputs["logits"], x))


def check(config: ml_collections.ConfigDict) -> str | None:
  """What the bounds allow: a family training with `shared.bound_metrics` can return this too."""
  o, k, m, loss = config.objective, config.model.num_samples, config.model.num_bounds, config.loss
  if k > 1 and loss not in shared.BOUNDS:
    return (f"config.model.num_samples={k} is the K of a multi-sample bound: use > 1 only with "
            f"a bound, not config.loss={loss!r}")
  if m > 1 and loss not in ("miwae", "piwae"):
    return (f"config.model.num_bounds={m} is the M of MIWAE and PIWAE: use > 1 only with "
            f"config.loss='miwae' or 'piwae'")
  if loss in shared.BOUNDS and (o.beta != 1 or o.kl_warmup_steps):
    return (f"the {loss.upper()} bound has no KL weight; leave config.objective.beta=1 and "
            f"kl_warmup_steps=0")
  if loss != "ciwae" and o.ciwae_beta != 0:
    return (f"config.objective.ciwae_beta={o.ciwae_beta} weighs the ELBO in config.loss='ciwae' "
            f"only; set it to 0.0")
  if loss == "ciwae" and not 0 <= o.ciwae_beta <= 1:
    return f"config.objective.ciwae_beta={o.ciwae_beta} must be in [0, 1]"
  return None
