"""Per-example random draws: example b's noise comes from its own key, keys_B[b].

Keys are derived from the step key and the example's position in the global batch, so the noise
an example gets does not depend on how the batch is split across devices: one device, a jit
mesh of eight and pmap over eight draw exactly the same numbers.
"""

import jax


def example_keys(step_key: jax.Array, first: jax.Array | int, count: int) -> jax.Array:
  """Keys of global-batch positions first, ..., first + count - 1: shape [count]."""
  return jax.vmap(jax.random.fold_in, (None, 0))(step_key, first + jax.numpy.arange(count))


def as_example_keys(keys: jax.Array, batch_size: int) -> jax.Array:
  """Per-example keys as they are, or a single key taken as the step key of a batch that starts
  at global position 0 (what train_step derives on one device): shape [batch_size]."""
  return example_keys(keys, 0, batch_size) if keys.ndim == 0 else keys


def normal(keys_B: jax.Array, shape: tuple[int, ...], dtype=jax.numpy.float32) -> jax.Array:
  """Standard normal noise of shape [B, *shape]."""
  return jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys_B)


def bernoulli(keys_B: jax.Array, p: jax.Array) -> jax.Array:
  """One Bernoulli draw per entry of p [B, ...]."""
  return jax.vmap(jax.random.bernoulli)(keys_B, p)


def split(keys_B: jax.Array, num: int = 2) -> tuple[jax.Array, ...]:
  """Splits every example's key: `num` arrays of shape [B]."""
  keys_BxN = jax.vmap(lambda k: jax.random.split(k, num))(keys_B)
  return tuple(keys_BxN[:, i] for i in range(num))


def fold_in(keys_B: jax.Array, data: int | jax.Array) -> jax.Array:
  """Every example's key folded with the same `data`: [B] new keys."""
  return jax.vmap(jax.random.fold_in, (0, None))(keys_B, data)
