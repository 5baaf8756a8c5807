"""A masked autoregressive flow (Papamakarios et al., 2017) fitted to a run's train codes by
maximum likelihood: the `ex_post_maf` sampler of aejax/analysis/samplers.py, a density beside the
ex-post Gaussian mixture.

Each of `layers` MAF layers is a MADE (aejax/models/flows.py) giving mu and alpha (bounded:
ALPHA_BOUND), with
u = (z - mu(z)) exp(-alpha(z)), so log p(z) = log N(u_L; 0, I) - sum_l sum_d alpha_l,d; the
variables' order is reversed between layers (the paper's choice). Sampling inverts the layers,
each in Z passes (z_d = u_d exp(alpha_d) + mu_d once z_<d is known). The codes are standardised
per dimension first, and the density accounts for it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis import code_fitting
from aejax.models import flows

LAYERS = 5
HIDDEN = (128, 128)
STEPS = 4000
BATCH = 256
LEARNING_RATE = 1e-3
# alpha = ALPHA_BOUND tanh(alpha' / ALPHA_BOUND): a layer scales a code by at most e^2 either way.
# Unbounded, alpha reached hundreds far from the codes (exp(-alpha) overflowed: NaN densities);
# bounded at 5, fits of a 3-cluster mixture were worse (held-out log-likelihood -6.1 against
# -4.6 at 2) and 13% of their samples lay over 6 standard deviations out (0.03% at 2).
ALPHA_BOUND = 2.0


def _made(latents: int, hidden: tuple[int, ...], layer: int) -> flows.MADE:
  return flows.MADE(latents, hidden, reverse=layer % 2 == 1)


def _mu_alpha(made: flows.MADE, params, z_NxZ: jax.Array) -> tuple[jax.Array, jax.Array]:
  mu_NxZ, alpha_NxZ = made.apply({"params": params}, z_NxZ)
  return mu_NxZ, ALPHA_BOUND * jnp.tanh(alpha_NxZ / ALPHA_BOUND)


def init(key: jax.Array, latents: int, layers: int = LAYERS,
         hidden: tuple[int, ...] = HIDDEN) -> list:
  """The layers' MADE parameters."""
  z = jnp.zeros((1, latents))
  return [_made(latents, hidden, l).init(k, z)["params"]
          for l, k in enumerate(jax.random.split(key, layers))]


def to_noise(params: list, z_NxZ: jax.Array,
             hidden: tuple[int, ...] = HIDDEN) -> tuple[jax.Array, jax.Array]:
  """(u [N, Z], log |det du/dz| [N]) of standardised codes through every layer."""
  latents = z_NxZ.shape[-1]
  log_det_N = jnp.zeros(z_NxZ.shape[:-1])
  for l, p in enumerate(params):
    mu_NxZ, alpha_NxZ = _mu_alpha(_made(latents, hidden, l), p, z_NxZ)
    z_NxZ = (z_NxZ - mu_NxZ) * jnp.exp(-alpha_NxZ)
    log_det_N = log_det_N - jnp.sum(alpha_NxZ, axis=-1)
  return z_NxZ, log_det_N


def log_prob(params: list, z_NxZ: jax.Array, hidden: tuple[int, ...] = HIDDEN) -> jax.Array:
  """log p(z) [N] of standardised codes."""
  u_NxZ, log_det_N = to_noise(params, z_NxZ, hidden)
  log_normal_N = -0.5 * jnp.sum(jnp.square(u_NxZ) + jnp.log(2 * jnp.pi), axis=-1)
  return log_normal_N + log_det_N


def from_noise(params: list, u_NxZ: jax.Array, hidden: tuple[int, ...] = HIDDEN) -> jax.Array:
  """The inverse of to_noise: each layer inverted one variable a pass, in its order (z_d needs
  z_<d only), the last layer first."""
  latents = u_NxZ.shape[-1]
  for l in reversed(range(len(params))):
    made = _made(latents, hidden, l)
    order = np.arange(latents)[::-1] if made.reverse else np.arange(latents)

    def one_pass(i, z_NxZ, made=made, p=params[l], u_NxZ=u_NxZ, order=jnp.asarray(order)):
      mu_NxZ, alpha_NxZ = _mu_alpha(made, p, z_NxZ)
      # Only variable order[i] is final after this pass; the others keep their values (0 until
      # their pass), so no value computed from unfinished inputs enters the next pass.
      this_Z = jnp.arange(latents) == order[i]
      return jnp.where(this_Z, u_NxZ * jnp.exp(alpha_NxZ) + mu_NxZ, z_NxZ)

    u_NxZ = jax.lax.fori_loop(0, latents, one_pass, jnp.zeros_like(u_NxZ))
  return u_NxZ


@dataclasses.dataclass(frozen=True)
class FittedMAF:
  """A MAF fitted to codes: `log_prob(z)` [N] and `sample(n, seed)` [n, Z] in the codes' units."""
  params: list
  unit: code_fitting.Standardisation
  hidden: tuple[int, ...]

  def log_prob(self, z_NxZ: np.ndarray) -> np.ndarray:
    lp = jax.jit(log_prob, static_argnums=2)(self.params, self.unit.to_unit(z_NxZ), self.hidden)
    return np.asarray(lp, np.float64) - np.sum(np.log(self.unit.std_Z))

  def sample(self, n: int, seed: int) -> np.ndarray:
    u = jax.random.normal(jax.random.key(seed), (n, len(self.unit.mean_Z)))
    return self.unit.from_unit(jax.jit(from_noise, static_argnums=2)(self.params, u, self.hidden))


def fit(codes_NxZ: np.ndarray, seed: int, layers: int = LAYERS, hidden: tuple[int, ...] = HIDDEN,
        steps: int = STEPS, batch: int = BATCH, learning_rate: float = LEARNING_RATE) -> FittedMAF:
  """Maximum likelihood by Adam on random batches of the standardised codes, seeded."""
  unit = code_fitting.Standardisation.of(codes_NxZ)
  x_NxZ = unit.to_unit(codes_NxZ)
  init_key, batch_key = jax.random.split(jax.random.key(seed))
  params = code_fitting.adam_fit(
      lambda p, x, _: -jnp.mean(log_prob(p, x, hidden)),
      init(init_key, x_NxZ.shape[1], layers, hidden), x_NxZ, batch_key, steps=steps,
      batch=batch, learning_rate=learning_rate)
  return FittedMAF(params, unit, tuple(hidden))
