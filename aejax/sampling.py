"""Per-example random draws: example b's noise comes from its own key, keys_B[b].

Keys are derived from the step key and the example's position in the global batch, so the noise
an example gets does not depend on how the batch is split across devices: one device, a jit
mesh of eight and pmap over eight draw exactly the same numbers.
"""

from typing import NamedTuple

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


def fold_in(keys_B: jax.Array, data: int | jax.Array) -> jax.Array:
  """Every example's key folded with the same `data`: [B] new keys."""
  return jax.vmap(jax.random.fold_in, (0, None))(keys_B, data)


class Streams(NamedTuple):
  """An example's randomness, one stream per purpose: per-example keys [B], stream i of example
  b being fold_in(key_b, i) in this field order (`streams`), so no stream is another's key or
  one that another part of the step consumes."""
  input: jax.Array  # The binarisation's draws (preprocess.binarize), before the family.
  corrupt: jax.Array  # The denoising corruption's (preprocess.corrupt), before the family.
  posterior: jax.Array  # The model's noise, model(x, streams.posterior); the test NLL folds off it.
  prior: jax.Array  # Draws from the prior (the WAE's and MMD's prior samples).
  extra: jax.Array  # Anything else a family draws: split or fold it for more than one use.


def streams(keys_B: jax.Array, batch_size: int) -> Streams:
  """The streams of examples with keys `keys_B` (or of one step key: as_example_keys)."""
  keys_B = as_example_keys(keys_B, batch_size)
  return Streams(*(fold_in(keys_B, i) for i in range(len(Streams._fields))))
