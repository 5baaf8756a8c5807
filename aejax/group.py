"""A group of runs on the devices: its layout, its runs' inputs and its initial state.

A run alone is a group of one without the run axis; a vectorised group stacks its runs' states,
keys and hyperparameters on a leading run axis. The layout splits that axis over the mesh when
the group size is a multiple of the device count (each run whole on one device: no all-reduce,
and a device holds only its runs' states), and otherwise replicates it, every run's batch then
split over all devices. The trainer and `aejax.bench` build groups here, so both run the same
program.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from aejax import hparams
from aejax import memory
from aejax import parallel
from aejax.errors import UserError
from aejax.state import TrainState, init_state

KEY_NAMES = ("init", "data", "train", "eval")


def split_keys(seed: int) -> dict[str, jax.Array]:
  """Named keys, each used for one purpose, so changing one use never shifts another."""
  return dict(zip(KEY_NAMES, jax.random.split(jax.random.key(seed), len(KEY_NAMES))))


def run_inputs(config: ml_collections.ConfigDict, seed: int | None = None,
               num_train: int | None = None) -> dict[str, Any]:
  """What a train or eval call takes as its `run` argument: the run's keys and its
  hyperparameters (hparams.FIELDS as arrays), with the training split's size `num_train` under
  hparams.NUM_TRAIN where known (beta_tcvae's aggregate posterior is over that split)."""
  hp = hparams.of(config)
  if num_train is not None:
    hp[hparams.NUM_TRAIN] = jnp.asarray(num_train, jnp.float32)
  return {"keys": split_keys(config.seed if seed is None else seed), "hp": hp}


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a group's arrays live. `vectorized=False`: one run, no run axis."""
  mesh: jax.sharding.Mesh
  num_runs: int
  vectorized: bool

  @property
  def run_sharded(self) -> bool:
    return self.vectorized and self.mesh.size > 1 and self.num_runs % self.mesh.size == 0

  @property
  def sharding(self) -> jax.sharding.NamedSharding:
    """Of every stacked array: the run axis split over the mesh, or replicated."""
    return (parallel.batch_sharded(self.mesh) if self.run_sharded
            else parallel.replicated(self.mesh))

  def describe(self) -> str:
    if not self.vectorized:
      return ""
    how = "the run axis split over" if self.run_sharded else "each run data-parallel over"
    return f"; a vectorised group of {self.num_runs} runs, {how} {self.mesh.size} device(s)"

  def device_of(self, i: int) -> jax.Device | None:
    """The one device that holds run i when the run axis is split (None otherwise)."""
    if not self.run_sharded:
      return None
    return self.mesh.devices.flat[i // (self.num_runs // self.mesh.size)]

  def run_sharding(self, i: int) -> jax.sharding.Sharding:
    """Where run i's own arrays (its checkpoint) live: on its device, or replicated."""
    device = self.device_of(i)
    if device is None:
      return parallel.replicated(self.mesh)
    return jax.sharding.SingleDeviceSharding(device)

  def stack(self, trees: list[Any]) -> Any:
    """Per-run trees (values every process holds alike) -> the group's arrays, placed by
    `sharding` (a jit's output: the same call works when other processes own some devices)."""
    if not self.vectorized:
      return self.put(trees[0])
    return jax.jit(lambda ts: jax.tree.map(lambda *xs: jnp.stack(xs), *ts),
                   out_shardings=self.sharding)(trees)

  def put(self, tree: Any) -> Any:
    """Values every process holds alike (with a leading run axis when vectorized) -> arrays
    placed by `sharding`."""
    return jax.jit(lambda t: t, out_shardings=self.sharding)(tree)

  def take(self, tree: Any, i: int) -> Any:
    """Run i's slice, where its checkpoint goes: on the device that holds it when the run axis is
    split (no copy lands on the other devices), else as the replicated arrays it already is."""
    if not self.vectorized:
      return tree
    device = self.device_of(i)
    if device is None or jax.process_count() > 1:
      return jax.tree.map(lambda x: x[i], tree)
    per_device = self.num_runs // self.mesh.size

    def leaf(x):
      shard = next(s for s in x.addressable_shards if s.device == device)
      return shard.data[i % per_device]  # Computed on `device`, from its own shard.
    return jax.tree.map(leaf, tree)

  def assemble(self, runs: list[Any]) -> Any:
    """Per-run trees already on their `run_sharding` -> the group's arrays. With the run axis
    split, each device stacks its own runs: nothing is copied to another device."""
    if not self.vectorized:
      return runs[0]
    if not self.run_sharded or jax.process_count() > 1:
      return self.put(jax.tree.map(lambda *xs: jnp.stack(xs), *runs))
    per_device = self.num_runs // self.mesh.size
    devices = list(self.mesh.devices.flat)

    def leaf(*xs):
      blocks = [jnp.stack(xs[d * per_device:(d + 1) * per_device]) for d in range(len(devices))]
      return jax.make_array_from_single_device_arrays((self.num_runs, *xs[0].shape),
                                                      self.sharding, blocks)
    return jax.tree.map(leaf, *runs)


def layout(num_runs: int, vectorized: bool) -> Layout:
  return Layout(parallel.make_mesh(), num_runs, vectorized)


def initial_state(layout: Layout, run: dict[str, Any], *, image_shape: tuple[int, ...],
                  model: Any, tx: Any) -> TrainState:
  """The group's initial train state from its runs' init keys, created where it will live."""
  init = functools.partial(init_state, image_shape=image_shape, model=model, tx=tx)
  return jax.jit(jax.vmap(init) if layout.vectorized else init,
                 out_shardings=layout.sharding)(run["keys"]["init"])


def abstract_state(*, image_shape: tuple[int, ...], model: Any, tx: Any) -> TrainState:
  """One run's train state as shapes and dtypes (nothing allocated)."""
  return jax.eval_shape(functools.partial(init_state, image_shape=image_shape, model=model,
                                          tx=tx), jax.random.key(0))


# --- What may form a group ---------------------------------------------------------------------

def check_group(configs: list[ml_collections.ConfigDict], vectorized: bool) -> None:
  """A group shares one program: its runs may differ only in seed and hparams.FIELDS."""
  if not vectorized and len(configs) != 1:
    raise ValueError("several runs train only as a vectorised group")
  keys = [hparams.group_key(c) for c in configs]
  if len(set(keys)) > 1:
    raise UserError(f"the runs of a vectorised group may differ only in seed and "
                    f"{', '.join(hparams.FIELDS)} (and must switch the same terms on); split "
                    f"them into groups with aejax.sweep --vectorize")
  if not vectorized:
    return
  for c in configs:
    if c.parallel != "mesh" or c.input_mode != "device":
      raise UserError("a vectorised group trains on the mesh with the data on the devices; use "
                      "config.parallel='mesh' and config.input_mode='device'")
    if c.group_runs == "unroll" and jax.device_count() > 1:
      raise UserError(f"config.group_runs='unroll' trains a group on one device, not "
                      f"{jax.device_count()}; use config.group_runs='vmap', which spreads a "
                      f"group over the mesh")


def check_fits(state_shapes: Any, layout: Layout) -> None:
  """A UserError when the group's train states (and their gradients, which exist at the same
  time) cannot fit on a device (memory.device_memory_bytes); it names the largest group size
  that would.

  It counts only those two. Left out, so a group may still run out of memory after passing:
  the train step's activations (they grow with config.batch_size and the model, and XLA decides
  which it keeps), the data on the devices (checked on its own: data/splits.py) and the
  evaluation's decoded samples (kept under config.eval_memory_bytes by the choice of their
  chunk: aejax/likelihood.py). An out-of-memory error is then one line naming those settings.
  """
  per_run = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state_shapes))
  per_run += sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state_shapes.params))
  divisor = layout.mesh.size if layout.run_sharded else 1
  limit, source = memory.device_memory_bytes()
  need = per_run * -(-layout.num_runs // divisor)
  if need > limit:
    fit = limit // per_run * divisor
    fix = (f"pass --max_group_size={fit} or less" if fit else
           "one run alone does not fit: use a smaller model")
    raise UserError(f"a vectorised group of {layout.num_runs} runs needs {need / 2**30:.1f} GiB "
                    f"per device for its train states and gradients, more than the "
                    f"{limit / 2**30:.1f} GiB of device memory ({source}); {fix}")
