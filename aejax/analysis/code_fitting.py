"""What the ex-post samplers that learn a density of a run's train codes share (aejax/analysis/
maf.py, two_stage.py): the codes standardised per dimension, and their parameters fitted by Adam
on random batches of them, seeded, in one compiled scan."""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Standardisation:
  """z = x std + mean per dimension; a constant dimension keeps std 1."""
  mean_Z: np.ndarray
  std_Z: np.ndarray

  @classmethod
  def of(cls, codes_NxZ: np.ndarray) -> "Standardisation":
    codes = np.asarray(codes_NxZ, np.float64)
    std_Z = codes.std(0)
    return cls(codes.mean(0), np.where(std_Z > 0, std_Z, 1.0))

  def to_unit(self, z_NxZ: np.ndarray) -> jax.Array:
    return jnp.asarray((np.asarray(z_NxZ, np.float64) - self.mean_Z) / self.std_Z, jnp.float32)

  def from_unit(self, x_NxZ) -> np.ndarray:
    return (np.asarray(x_NxZ) * self.std_Z + self.mean_Z).astype(np.float32)


def adam_fit(loss: Callable[[Any, jax.Array, jax.Array], jax.Array], params: Any,
             x_NxZ: jax.Array, key: jax.Array, *, steps: int, batch: int,
             learning_rate: float) -> Any:
  """`params` after `steps` Adam steps on loss(params, batch of x, key), each batch drawn with
  replacement (min(batch, N) rows) from its own key."""
  tx = optax.adam(learning_rate)
  size = min(batch, len(x_NxZ))

  @jax.jit
  def train(params, key):
    def step(carry, k):
      params, opt_state = carry
      idx_key, loss_key = jax.random.split(k)
      x_BxZ = x_NxZ[jax.random.randint(idx_key, (size,), 0, len(x_NxZ))]
      grads = jax.grad(loss)(params, x_BxZ, loss_key)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
    return params

  return train(params, key)
