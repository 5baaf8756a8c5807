"""The VAE with a VampPrior (Tomczak & Welling, 2018): the VAE's encoder, decoder and posterior,
and the prior p(z) = (1/K) sum_k q(z | u_k), the mixture of the encoder's posteriors at K learned
pseudo-inputs u_k. Trained with the single-sample Monte-Carlo ELBO (the KL to a mixture has no
closed form) or the VAE's bounds, its NLL estimated by aejax.likelihood.

Under PIWAE the split is by parameters, as Rainforth et al. (2018) define it (the generative
model's climb IWAE, the inference network's MIWAE): the pseudo-inputs are the prior's, so the
generative model's (not in INFERENCE), while the encoder, which the prior shares, takes MIWAE's
gradient through every pass of it, the prior's included (tests/test_bounds.py checks both
against jax.grad of each whole bound)."""

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

LOSSES = vae.LOSSES
LIKELIHOOD = True
POOLED = ()
# The VAE's fields are this family's too; other families leave num_pseudo at its default.
OWN_FIELDS = {**vae.OWN_FIELDS, "model.num_pseudo": 500}
MAIN_METRIC = vae.MAIN_METRIC
# The pseudo-inputs' initial values, N(mean, std^2) per pixel: faint grey images inside the
# hardtanh's linear range (the authors' code draws them around -0.05, where the clip to [0, 1]
# passes no gradient).
_PSEUDO_MEAN, _PSEUDO_STD = 0.05, 0.01


class VampVAE(vae.VAE):
  num_pseudo: int  # K, the mixture's components.
  image_shape: tuple[int, int, int]  # The pseudo-inputs': the data's.

  def setup(self):
    # The paper's parameterisation: a free matrix through a hardtanh onto [0, 1], the pixel range.
    self.pseudo_raw = self.param(
        "pseudo_inputs",
        lambda key, shape: _PSEUDO_MEAN + _PSEUDO_STD * jax.random.normal(key, shape),
        (self.num_pseudo, *self.image_shape))

  def pseudo_images(self) -> jax.Array:
    """The K pseudo-inputs u_k: [K, H, W, C] in [0, 1]."""
    return jnp.clip(self.pseudo_raw, 0.0, 1.0)

  def prior_components(self) -> tuple[jax.Array, jax.Array]:
    """(mean, logvar) [K, Z] of q(z | u_k), the mixture's components, in float32."""
    return self.posterior(self.pseudo_images())

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Codes [num, latents] from the prior: a component drawn uniformly, then a draw from it."""
    mean_KxZ, logvar_KxZ = self.prior_components()
    pick_key, noise_key = jax.random.split(key)
    k_N = jax.random.randint(pick_key, (num,), 0, self.num_pseudo)
    eps_NxZ = jax.random.normal(noise_key, (num, self.latents))
    return mean_KxZ[k_N] + jnp.exp(0.5 * logvar_KxZ[k_N]) * eps_NxZ

  def log_prior(self, z_SxBxZ: jax.Array) -> jax.Array:
    """log p(z) = logsumexp_k log q(z | u_k) - log K: [S, B]."""
    mean_KxZ, logvar_KxZ = self.prior_components()
    log_q_SxBxK = losses.log_normal_diag(z_SxBxZ.astype(jnp.float32)[:, :, None],
                                         mean_KxZ[None, None], logvar_KxZ[None, None])
    return jax.nn.logsumexp(log_q_SxBxK, axis=-1) - jnp.log(self.num_pseudo)

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    """The VAE's outputs and log p(z) at the sample, the prior's half of the Monte-Carlo KL."""
    out = super().__call__(x_BxHxWxC, stream)
    return {**out, "log_prior": self.log_prior(out["z"][None])[0]}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> VampVAE:
  encoder, decoder = factory.encoder_decoder(cfg, 2 * cfg.latents, image_shape, dtype)
  return VampVAE(encoder=encoder, decoder=decoder, latents=cfg.latents,
                 num_pseudo=cfg.num_pseudo, image_shape=tuple(image_shape),
                 decoder_dist=decoder_dists.of(cfg))


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """The ELBO with the KL estimated at the posterior sample, log q(z|x) - log p(z); the bounds
  are the VAE's, the model's log weights taking this prior."""
  if config.loss != "elbo":
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  out = forward.outputs(model, params, x_in, streams.posterior)
  log_q = losses.log_normal_diag(out["z"], out["mean"], out["logvar"])
  return shared.sampled_kl_elbo(model, out, x, log_q, config, step, hp, training)


def check(config: ml_collections.ConfigDict) -> str | None:
  if config.model.num_pseudo < 1:
    return (f"config.model.num_pseudo={config.model.num_pseudo} must be >= 1: the prior is a "
            f"mixture over that many pseudo-inputs")
  return vae.check(config)
