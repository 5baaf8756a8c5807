"""A family's forward pass as its objective scores it."""

from typing import Any

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]  # Per-example [B] arrays; 'loss' is the objective.


def outputs(model: Any, params: Any, x_in: jax.Array, stream: Any) -> dict[str, jax.Array]:
  """model(x_in) with its floating outputs in float32: per-pixel terms summed over 784 pixels
  (and then averaged over the batch) would lose whole nats in a bf16 model's dtype."""
  out = model.apply({"params": params}, x_in, stream)
  return jax.tree.map(
      lambda v: v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v, out)
