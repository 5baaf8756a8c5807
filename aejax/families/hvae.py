"""The VAE with two stochastic layers of Burda, Grosse & Salakhutdinov (2015): q(z1|x) q(z2|z1)
over codes z1 (model.latents) and z2 (model.latents2); p(z2) = N(0, I), p(z1|z2), and a Bernoulli
p(x|z1). Every Gaussian is diagonal, its mean and log-variance the two halves of one MLP's output
(the paper's code has a mean head and a log-sigma head on a shared tanh stack: the same densities,
log sigma = logvar / 2). x <-> z1 are config.model's encoder and decoder (model.hidden);
z1 <-> z2 are MLPs of model.hidden2, the generative one mirrored.

Trained on the single-sample log weight ('elbo': through p(z1|z2) no KL has a closed form, so
this is the paper's VAE objective at k = 1) or the IWAE bound ('iwae', model.num_samples). Both,
and the test NLL, are the one estimator of aejax.likelihood over this model's log weights.

The codes the analysis sees are z1's: `code` is the mean of q(z1|x), `decode` maps z1 to the
parameters of p(x|z1), and `sample` draws z1 from its prior ancestrally (z2 ~ N(0, I), then
z1 ~ p(z1|z2)), as the paper's code draws its samples; decoding gives the pixel means. So
reconstructions, interpolations and samples decode the same layer.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aejax import decoder_dists
from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import sampling
from aejax.families import forward
from aejax.families import vae
from aejax.models import factory
from aejax.models.mlp import MLPEncoder

LOSSES = ("elbo", "iwae")
LIKELIHOOD = True
POOLED = ()
# model.num_samples is the VAE's field too: the IWAE's k.
OWN_FIELDS = {"model.num_samples": 1, "model.hidden2": (), "model.latents2": 0}
MAIN_METRIC = vae.MAIN_METRIC


class HVAE(vae.VAE):
  """The VAE's encoder (x -> z1's mean and log-variance), decoder (z1 -> logits), `encode`,
  `code`, `decode`, `posterior` (q(z1|x), all that runs once per image) and `log_prior` (the
  N(0, I) of z2), plus the second layer."""

  encoder2: nn.Module  # z1 -> 2 * latents2 features: q(z2|z1)'s mean and log-variance.
  decoder2: nn.Module  # z2 -> 2 * latents features: p(z1|z2)'s mean and log-variance.
  latents2: int

  @staticmethod
  def _gaussian(net: nn.Module, h_NxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, logvar) a network gives for codes h, in float32."""
    mean_NxZ, logvar_NxZ = jnp.split(net(h_NxD).astype(jnp.float32), 2, axis=-1)
    return mean_NxZ, logvar_NxZ

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """Codes z1 [num, latents] from the prior: z2 ~ N(0, I), z1 ~ p(z1|z2)."""
    key2, key1 = jax.random.split(key)
    z2_NxY = jax.random.normal(key2, (num, self.latents2))
    mean_NxZ, logvar_NxZ = self._gaussian(self.decoder2, z2_NxY)
    return mean_NxZ + jnp.exp(0.5 * logvar_NxZ) * jax.random.normal(key1, mean_NxZ.shape)

  @property
  def noise_size(self) -> int:
    """z1's standard-normal draws, then z2's."""
    return self.latents + self.latents2

  def _samples(self, posterior: Any, eps_KxBxE: jax.Array) -> dict[str, jax.Array]:
    """The reparameterised z1 ~ q(z1|x) and z2 ~ q(z2|z1) the draws make (z2 from each z1
    sample's own q), with the conditionals that score them."""
    mean_BxZ, logvar_BxZ = posterior
    k, b = eps_KxBxE.shape[:2]
    eps1_KxBxZ, eps2_KxBxY = jnp.split(eps_KxBxE, [self.latents], axis=-1)
    z1_KxBxZ = mean_BxZ[None] + jnp.exp(0.5 * logvar_BxZ)[None] * eps1_KxBxZ
    # The MLPs take [N, features]: the K x B samples go through as one batch.
    q_mean_NxY, q_logvar_NxY = self._gaussian(self.encoder2, z1_KxBxZ.reshape(k * b, -1))
    q_mean_KxBxY, q_logvar_KxBxY = (v.reshape(k, b, -1) for v in (q_mean_NxY, q_logvar_NxY))
    z2_KxBxY = q_mean_KxBxY + jnp.exp(0.5 * q_logvar_KxBxY) * eps2_KxBxY
    p_mean_NxZ, p_logvar_NxZ = self._gaussian(self.decoder2, z2_KxBxY.reshape(k * b, -1))
    logits = self.decode(z1_KxBxZ.reshape(k * b, -1))
    return {"z1": z1_KxBxZ, "z2": z2_KxBxY, "q_mean2": q_mean_KxBxY, "q_logvar2": q_logvar_KxBxY,
            "p_mean1": p_mean_NxZ.reshape(k, b, -1), "p_logvar1": p_logvar_NxZ.reshape(k, b, -1),
            "logits": logits.reshape(k, b, *logits.shape[1:])}

  def log_weights(self, posterior: Any, eps_KxBxE: jax.Array, x_Bx: jax.Array) -> jax.Array:
    """log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1) of the K samples the
    draws eps make: [K, B]. The reparameterised samples carry gradients to every network."""
    mean_BxZ, logvar_BxZ = posterior
    s = self._samples(posterior, eps_KxBxE)
    z1_KxBxZ, z2_KxBxY = s["z1"], s["z2"]
    log_p_KxB = (self.decoder_dist.log_prob(s["logits"], x_Bx)
                 + losses.log_normal_diag(z1_KxBxZ, s["p_mean1"], s["p_logvar1"])
                 + self.log_prior(z2_KxBxY))
    log_q_KxB = (losses.log_normal_diag(z1_KxBxZ, mean_BxZ[None], logvar_BxZ[None])
                 + losses.log_normal_diag(z2_KxBxY, s["q_mean2"], s["q_logvar2"]))
    return log_p_KxB - log_q_KxB

  def __call__(self, x_BxHxWxC: jax.Array, stream: sampling.Stream) -> dict[str, jax.Array]:
    """One posterior sample of both layers per example (and so every network's parameters at
    init). `stream`: the batch's posterior noise (aejax/sampling.py)."""
    posterior = self.posterior(x_BxHxWxC)
    eps_1xBxE = sampling.normal(stream, (x_BxHxWxC.shape[0], self.noise_size))[None]
    s = self._samples(posterior, eps_1xBxE)
    return {"z": s["z1"][0], "z2": s["z2"][0], "mean": posterior[0], "logvar": posterior[1],
            "logits": s["logits"][0]}


def create(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
           dtype: str) -> nn.Module:
  encoder, decoder = factory.encoder_decoder(cfg, 2 * cfg.latents, image_shape, dtype)
  act, compute = factory.ACTIVATIONS[cfg.activation], factory.DTYPES[dtype]
  hidden2 = tuple(cfg.hidden2)
  # Between codes the MLP encoder's stack (flatten, Dense layers) serves both directions.
  return HVAE(encoder=encoder, decoder=decoder, latents=cfg.latents,
              encoder2=MLPEncoder(hidden2, 2 * cfg.latents2, act, dtype=compute),
              decoder2=MLPEncoder(hidden2[::-1], 2 * cfg.latents, act, dtype=compute),
              latents2=cfg.latents2, decoder_dist=decoder_dists.of(cfg))


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None, axis_name: str | None
                ) -> forward.Metrics:
  """Every loss is a bound of the model's log weights: the bound losses are the VAE's own code
  path (it asks the model only for the hooks of aejax.likelihood), 'elbo' its k = 1 case."""
  if config.loss != "elbo":
    return vae.per_example(model, params, x_in, x, streams, config, hp, training=training,
                           step=step, axis_name=axis_name)
  log_w_B = likelihood.importance_log_weights(model, params, x_in, x, streams.posterior, 1,
                                              1)[0]
  return {"loss": -log_w_B, "elbo": log_w_B}


def check(config: ml_collections.ConfigDict) -> str | None:
  m, o = config.model, config.objective
  if not (isinstance(m.latents2, int) and m.latents2 >= 1):
    return (f"config.model.latents2={m.latents2!r} must be >= 1 for 'hvae': the size of the top "
            f"stochastic layer z2, e.g. --config.model.latents2=50")
  if not (len(m.hidden2) > 0 and all(isinstance(w, int) and w >= 1 for w in m.hidden2)):
    return (f"config.model.hidden2={tuple(m.hidden2)} must be positive layer widths for 'hvae' "
            f"(the z1 <-> z2 MLPs), e.g. --config.model.hidden2=\"(100, 100)\"")
  if o.beta != 1 or o.kl_warmup_steps:
    return ("'hvae' trains a bound on log p(x), with no KL weight; leave config.objective.beta=1 "
            "and kl_warmup_steps=0")
  return vae.check(config)
