"""Random draws of a batch that do not depend on how the batch is split across devices.

A `Stream` is where a batch's draws for one purpose come from, in one of two forms:
- one key (the train step, training's evaluation): one draw of the whole global batch's shape.
  JAX's partitionable threefry (`jax_threefry_partitionable`, on by default) gives a global array
  the same values however it is sharded, so under jit over a mesh one device, eight and two
  processes draw exactly the same numbers; under pmap, where each device holds its slice of the
  batch, the stream names the pmap axis and each device draws the global shape and keeps its own
  rows (pmap pays its device count's draws: the price of asking for pmap).
- one key per example, [B] (analysis): example b's draws come from its own key, so an image's
  draws do not depend on which batch it is in (the first n images of a split get the same draws as
  the whole split). The cost is a vmap over B keys, which the train step does not pay.
"""

from typing import Callable, NamedTuple

import flax.struct
import jax


@flax.struct.dataclass
class Stream:
  """`key`: one key (draws of the whole global batch) or [B] keys (one per example).
  `axis_name`: under pmap, the device axis: this device's rows of the global batch's draw."""
  key: jax.Array
  axis_name: str | None = flax.struct.field(pytree_node=False, default=None)


def example_keys(key: jax.Array, first: jax.Array | int, count: int) -> Stream:
  """The per-example stream of split positions first, ..., first + count - 1 of `key`'s
  stream: example n's key is fold_in(key, n)."""
  return Stream(jax.vmap(jax.random.fold_in, (None, 0))(key, first + jax.numpy.arange(count)))


def as_stream(stream: Stream | jax.Array) -> Stream:
  """`stream`, or raw keys taken as a stream: one key, or one per example (no pmap axis)."""
  return stream if isinstance(stream, Stream) else Stream(stream)


def fold_in(stream: Stream | jax.Array, data: int | jax.Array) -> Stream:
  """A new stream of the same form: the key (every example's key) folded with `data`."""
  stream = as_stream(stream)
  if stream.key.ndim:
    return stream.replace(key=jax.vmap(jax.random.fold_in, (0, None))(stream.key, data))
  return stream.replace(key=jax.random.fold_in(stream.key, data))


def draw(stream: Stream | jax.Array, sample: Callable[[jax.Array, tuple[int, ...]], jax.Array],
         shape_B: tuple[int, ...]) -> jax.Array:
  """`sample(key, shape)` (e.g. jax.random.normal) for a batch of shape [B, ...]: B local rows."""
  stream = as_stream(stream)
  if stream.key.ndim:  # One key per example.
    return jax.vmap(lambda k: sample(k, tuple(shape_B[1:])))(stream.key)
  if stream.axis_name is None:  # The whole batch, however jit shards it.
    return sample(stream.key, tuple(shape_B))
  devices = jax.lax.axis_size(stream.axis_name)
  rows = shape_B[0]
  global_draw = sample(stream.key, (devices * rows, *shape_B[1:]))
  return jax.lax.dynamic_slice_in_dim(global_draw, jax.lax.axis_index(stream.axis_name) * rows,
                                      rows)


def normal(stream: Stream | jax.Array, shape_B: tuple[int, ...], dtype=jax.numpy.float32) -> jax.Array:
  """Standard normal noise of shape [B, ...]."""
  return draw(stream, lambda k, s: jax.random.normal(k, s, dtype), shape_B)


def bernoulli(stream: Stream | jax.Array, p: jax.Array) -> jax.Array:
  """One Bernoulli draw per entry of p [B, ...] (jax.random.bernoulli's: uniform < p)."""
  return draw(stream, lambda k, s: jax.random.uniform(k, s, p.dtype), p.shape) < p


class Streams(NamedTuple):
  """A batch's randomness, one stream per purpose: stream i is fold_in(stream, i) in this field
  order (`streams`), so no stream is another's key or one that another part of the step
  consumes."""
  input: Stream  # The binarisation's draws (preprocess.binarize), before the family.
  corrupt: Stream  # The denoising corruption's (preprocess.corrupt), before the family.
  posterior: Stream  # The model's noise, model(x, streams.posterior); the test NLL folds off it.
  prior: Stream  # Draws from the prior (the WAE's and MMD's prior samples).
  extra: Stream  # Anything else a family draws: fold it for more than one use.


def streams(stream: Stream | jax.Array) -> Streams:
  """The streams of a batch whose randomness is `stream`."""
  return Streams(*(fold_in(stream, i) for i in range(len(Streams._fields))))
