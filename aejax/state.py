"""The train state (parameters, optimizer state, step) and its initialisation.

Apart from the trainer so that restoring a run for analysis needs neither the loop nor its input.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from aejax import sampling


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def init_state(key: jax.Array, image_shape: tuple[int, ...], *, model: Any,
               tx: optax.GradientTransformation) -> TrainState:
  x = jnp.zeros((1, *image_shape), jnp.float32)
  params = model.init(key, x, sampling.Stream(jax.random.key(0)))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
