"""Streaming input: grain over the prepared TFDS ArrayRecord files, for splits that do not fit.

`config.input_mode='stream'` reads each step's images from disk instead of keeping the split on
the devices. It gives exactly the batches of the device-resident path (`epochs.make_train_chunk`)
for the same seed: the same epoch permutation, step keys and sums (aejax/epochs.py), the
permutation drawn once per epoch on the host, and each batch goes through the same pure
`train_step`, jitted, so the two modes train the same parameters.

Per process: `grain.sharding.ShardByJaxProcess` names this process's shard; the process reads
only the rows of each global batch that its own devices hold, and
`make_array_from_process_local_data` joins the shards into the global batch (under pmap, the
process splits its rows over its local devices instead). Reading and
decoding run in `num_workers` grain worker processes, and a background thread puts the next
batches on the devices while a step runs.
TensorFlow is never imported: `as_data_source` reads ArrayRecord through array_record.
"""

from typing import Any, Callable, Iterator

from absl import flags
import grain
import jax
import jax.numpy as jnp
import numpy as np

from aejax import epochs
from aejax.data import views
from aejax.errors import UserError

INPUT_MODES = ("device", "stream")


def open_source(builder_dir: str, split: str, view: views.View = views.View()):
  """The random-access ArrayRecord source of a prepared TFDS split (no TensorFlow), its images
  as `view` makes them (config.input.crop/resize)."""
  import tensorflow_datasets as tfds

  source = tfds.builder_from_directory(builder_dir).as_data_source(split=split)
  return ViewedSource(source, view) if view else source


class ViewedSource:
  """A source whose examples' images go through a view (views.View), in grain's workers: the
  same function, image by image, as the device path's `dataset.load_split` applies."""

  def __init__(self, source, view: views.View):
    self.source, self.view = source, view
    self.dataset_info = source.dataset_info

  def __len__(self) -> int:
    return len(self.source)

  def __getitems__(self, indices) -> list[dict[str, Any]]:
    examples = self.source.__getitems__(indices)
    images = self.view(np.stack([ex["image"] for ex in examples]))
    return [{**ex, "image": image} for ex, image in zip(examples, images)]


def image_shape(source) -> tuple[int, ...]:
  """The shape of the images the source yields (after its view, if any)."""
  shape = tuple(source.dataset_info.features["image"].shape)
  return source.view.shape(shape) if isinstance(source, ViewedSource) else shape


class ReadImages:
  """Global indices of one batch -> their images as one uint8 array; runs in grain's workers.

  A class (not a closure) so the worker processes can unpickle it; reading a whole batch at
  once lets ArrayRecord fetch the records in one call.
  """

  def __init__(self, source):
    self.source = source

  def __call__(self, idx_B: np.ndarray) -> np.ndarray:
    examples = self.source.__getitems__(idx_B.tolist())
    return np.stack([ex["image"] for ex in examples])


def epoch_permutation(data_key: jax.Array, epoch: int, num_examples: int) -> np.ndarray:
  """The device path's permutation of epoch `epoch` (epochs.permutation), drawn on this
  process's own CPU device.

  Every process draws the same values from the same key (threefry is the same on every
  backend), and a local device keeps the result readable where a global one would span
  other processes' devices.
  """
  cpu = jax.local_devices(backend="cpu")[0]
  if not data_key.is_fully_addressable:  # A multi-process run's replicated key: take our copy.
    data_key = data_key.addressable_data(0)
  with jax.default_device(cpu):
    return np.asarray(epochs.permutation(jax.device_put(data_key, cpu), epoch, num_examples))


def local_rows(batch_sharding: jax.sharding.Sharding, batch_size: int) -> slice:
  """The rows of a global batch that this process's devices hold (one contiguous block)."""
  shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
  index_map = batch_sharding.addressable_devices_indices_map((batch_size,))
  starts = sorted({(idx[0].start or 0) for idx in index_map.values()})
  stops = sorted({(idx[0].stop or batch_size) for idx in index_map.values()})
  per_process = batch_size // shard.shard_count
  want = slice(shard.shard_index * per_process, (shard.shard_index + 1) * per_process)
  if ((starts[0], stops[-1]) != (want.start, want.stop)
      or per_process * shard.shard_count != batch_size):
    raise UserError(f"process {shard.shard_index} holds rows {starts[0]}-{stops[-1]} of each "
                    f"batch of {batch_size}, not block {shard.shard_index} of "
                    f"{shard.shard_count}; use a batch size divisible by the devices and a mesh "
                    f"whose devices are ordered by process")
  return want


def batches(source, batch_indices_SxB: np.ndarray, rows: slice, *, num_workers: int,
            to_device: Callable[[np.ndarray], jax.Array], prefetch: int = 2) -> Iterator[jax.Array]:
  """Yields the images of `batch_indices_SxB[s, rows]` for each step s, already on the devices."""
  local_SxL = np.ascontiguousarray(batch_indices_SxB[:, rows])
  ds = grain.MapDataset.source(list(local_SxL)).map(ReadImages(source)).to_iter_dataset()
  # Worker w decodes batches w, w + n, ...; grain hands them back in order, so the number of
  # workers never changes the sequence.
  ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  ds = grain.experimental.ThreadPrefetchIterDataset(ds.map(to_device),
                                                    prefetch_buffer_size=prefetch)
  it = iter(ds)
  try:
    yield from it
  finally:
    if hasattr(it, "close"):
      it.close()  # Ends grain's worker processes now rather than at garbage collection.


class StreamEpochs:
  """(state, epoch, start, num_steps) -> (state, metric sums): the device path's call, from disk.

  The same call and result as the compiled device-resident chunk (`epochs.make_train_chunk`:
  `epochs.summarize`'s sums over the steps), so the loop calls either one. `run`: the run's
  inputs (group.run_inputs), which the step takes as arguments as the device path does. One
  grain pipeline covers as many consecutive epochs as `index_budget_bytes` of batch indices
  allow, so the worker processes start once per window rather than once per epoch; a call at
  another position than the next one (a resume) starts a new window there.
  """

  def __init__(self, step_fn: Callable, source, *, batch_size: int, steps_per_epoch: int,
               num_examples: int, num_epochs: int, run: dict[str, Any],
               mesh: jax.sharding.Mesh, num_workers: int, state: Any, mode: str = "mesh",
               index_map: np.ndarray | None = None, index_budget_bytes: int = 64 << 20):
    from aejax import parallel  # Local: parallel is the trainer's; the pipeline borrows it.

    if num_workers and not flags.FLAGS.is_parsed():
      # grain reads its own absl flags when it starts workers; outside an absl app (a test, a
      # notebook) nothing parsed them, so take their defaults rather than fail there.
      flags.FLAGS.mark_as_parsed()
    self._source, self._keys, self._num_workers = source, run["keys"], num_workers
    self._batch_size, self._steps, self._num_examples = batch_size, steps_per_epoch, num_examples
    self._num_epochs = num_epochs
    # A restricted split (config.input.train_labels): permutation position i reads source record
    # index_map[i], as the device path's gather reads row i of the images it kept.
    self._index_map = index_map
    batch_sharding = parallel.batch_sharded(mesh)
    self._rows = local_rows(batch_sharding, batch_size)
    local_batch = self._rows.stop - self._rows.start
    self._epochs_per_window = max(1, index_budget_bytes // (steps_per_epoch * local_batch * 8))
    shape = (batch_size, *image_shape(source))

    def step(state, x_B, run):
      return step_fn(state, x_B, epochs.step_key(run["keys"]["train"], state.step),
                     hp=run["hp"])

    if mode == "pmap":
      # Each local device takes its slice of this process's rows; the state goes to the pmap
      # layout for a call's steps and back after, and the (pmean-equal) metrics of replica 0
      # stand for all. pmap compiles at its first call: its ahead-of-time form wants global
      # arrays, its call each process's own.
      self._to_device = parallel.split_to_pmap
      self._step = jax.pmap(step, axis_name=parallel.DATA_AXIS, in_axes=(0, 0, None),
                            donate_argnums=0)
      self._to_call = parallel.to_pmap
      self._from_call = lambda tree: parallel.from_pmap(tree, mesh)
      self._replica0 = lambda metrics: jax.tree.map(lambda v: v[0], metrics)
    else:
      self._to_device = lambda x_LxHxWxC: jax.make_array_from_process_local_data(
          batch_sharding, x_LxHxWxC, shape)
      x_spec = jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=batch_sharding)
      self._step = jax.jit(step, donate_argnums=0).lower(state, x_spec, run).compile()
      self._to_call = self._from_call = self._replica0 = lambda tree: tree
    self._batches = None  # The open window's iterator of device batches.
    self._next = None  # The (epoch, step) that iterator is positioned at.
    self._window_end = None  # (epoch, step) one past its last batch.

  def _open_window(self, first_epoch: int, first_step: int) -> None:
    self.close()
    last_epoch = max(first_epoch,
                     min(self._num_epochs, first_epoch + self._epochs_per_window - 1))
    indices = []
    for epoch in range(first_epoch, last_epoch + 1):
      perm_N = epoch_permutation(self._keys["data"], epoch, self._num_examples)
      idx_SxB = perm_N[:self._steps * self._batch_size].reshape(self._steps, self._batch_size)
      if self._index_map is not None:
        idx_SxB = self._index_map[idx_SxB]
      indices.append(idx_SxB[first_step:] if epoch == first_epoch else idx_SxB)
    self._batches = batches(self._source, np.concatenate(indices), self._rows,
                            num_workers=self._num_workers, to_device=self._to_device)
    self._next, self._window_end = (first_epoch, first_step), (last_epoch + 1, 0)

  def __call__(self, state, epoch: int, start: int, num_steps: int, run: dict[str, Any]):
    if self._batches is None or (epoch, start) != self._next:
      self._open_window(epoch, start)
    step_metrics = []
    state = self._to_call(state)
    for _ in range(num_steps):
      # Dispatch is asynchronous: the loop fetches the next batch while this step runs.
      state, metrics = self._step(state, next(self._batches), run)
      step_metrics.append(self._replica0(metrics))
    state = self._from_call(state)
    end = start + num_steps
    self._next = (epoch + 1, 0) if end == self._steps else (epoch, end)
    if self._next == self._window_end:
      self.close()
    # Stacked, then summed: the reduction the scanned chunk applies to its per-step metrics.
    return state, epochs.summarize(jax.tree.map(lambda *v: jnp.stack(v), *step_metrics))

  def close(self) -> None:
    """Stops the window's worker processes (also done when its batches run out)."""
    if self._batches is not None:
      self._batches.close()
      self._batches = None
