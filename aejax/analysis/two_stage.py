"""The second stage of the two-stage VAE (Dai & Wipf, 2019) fitted to a run's train codes: the
`ex_post_two_stage` sampler of aejax/analysis/samplers.py.

A VAE on the codes z (standardised per dimension) with as many latents u as z has dimensions:
q(u|z) a diagonal Gaussian, p(u) = N(0, I), p(z|u) = N(mu(u), gamma I) with gamma learned (as a
log), the paper's device that lets the second stage match the codes' distribution closely; the
encoder and the decoder are MLPs of HIDDEN ReLU units (the paper's are three layers of 1024, here
smaller for CPU fits). Trained on the single-sample ELBO by Adam; codes are drawn from the
second stage's density, z ~ N(mu(u), gamma I) with u ~ N(0, I), in the codes' units (the paper
shows gamma -> 0 at the optimum, where this is mu(u)).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis import code_fitting

HIDDEN = (256, 256)
STEPS = 4000
BATCH = 256
LEARNING_RATE = 1e-3


class SecondStage(nn.Module):
  latents: int
  hidden: tuple[int, ...]

  def setup(self):
    self.encoder = [nn.Dense(w) for w in self.hidden] + [nn.Dense(2 * self.latents)]
    self.decoder = [nn.Dense(w) for w in self.hidden] + [nn.Dense(self.latents)]
    self.log_gamma = self.param("log_gamma", nn.initializers.zeros, ())

  def _mlp(self, layers, h):
    for layer in layers[:-1]:
      h = nn.relu(layer(h))
    return layers[-1](h)

  def decode(self, u_NxZ: jax.Array) -> jax.Array:
    return self._mlp(self.decoder, u_NxZ)

  def __call__(self, z_NxZ: jax.Array, eps_NxZ: jax.Array) -> jax.Array:
    """The negative ELBO of each code [N], in nats."""
    mean_NxZ, logvar_NxZ = jnp.split(self._mlp(self.encoder, z_NxZ), 2, axis=-1)
    u_NxZ = mean_NxZ + jnp.exp(0.5 * logvar_NxZ) * eps_NxZ
    mu_NxZ = self.decode(u_NxZ)
    nll_N = 0.5 * jnp.sum(jnp.square(z_NxZ - mu_NxZ) / jnp.exp(self.log_gamma)
                          + self.log_gamma + jnp.log(2 * jnp.pi), axis=-1)
    kl_N = 0.5 * jnp.sum(jnp.exp(logvar_NxZ) + jnp.square(mean_NxZ) - 1 - logvar_NxZ, axis=-1)
    return nll_N + kl_N


@dataclasses.dataclass(frozen=True)
class FittedTwoStage:
  """A second stage fitted to codes: `sample(n, seed)` [n, Z] in the codes' units, `gamma` the
  learned decoder variance (of the standardised codes)."""
  params: dict
  unit: code_fitting.Standardisation
  hidden: tuple[int, ...]

  @property
  def gamma(self) -> float:
    return float(np.exp(self.params["log_gamma"]))

  def sample(self, n: int, seed: int) -> np.ndarray:
    model = SecondStage(len(self.unit.mean_Z), self.hidden)
    u_key, noise_key = jax.random.split(jax.random.key(seed))
    u = jax.random.normal(u_key, (n, len(self.unit.mean_Z)))
    mu = jax.jit(lambda p, u: model.apply({"params": p}, u, method="decode"))(self.params, u)
    return self.unit.from_unit(mu + np.sqrt(self.gamma) * jax.random.normal(noise_key, mu.shape))


def fit(codes_NxZ: np.ndarray, seed: int, hidden: tuple[int, ...] = HIDDEN, steps: int = STEPS,
        batch: int = BATCH, learning_rate: float = LEARNING_RATE) -> FittedTwoStage:
  """The second stage trained on random batches of the standardised codes, seeded."""
  unit = code_fitting.Standardisation.of(codes_NxZ)
  x_NxZ = unit.to_unit(codes_NxZ)
  model = SecondStage(x_NxZ.shape[1], tuple(hidden))
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params = model.init(init_key, x_NxZ[:1], jnp.zeros_like(x_NxZ[:1]))["params"]
  loss = lambda p, z, k: jnp.mean(model.apply({"params": p}, z, jax.random.normal(k, z.shape)))
  params = code_fitting.adam_fit(loss, params, x_NxZ, train_key, steps=steps, batch=batch,
                                 learning_rate=learning_rate)
  return FittedTwoStage(params, unit, tuple(hidden))
