"""Device mesh and shardings for data parallelism: state replicated, batches split on 'data';
and the pmap layout, built per process from what its own devices hold."""

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = "data"
MODES = ("mesh", "pmap")  # config.parallel: jit over a Mesh (default) or pmap.


def make_mesh() -> Mesh:
  """One 'data' axis over every device of every process.

  Auto axes: shardings are annotations and XLA inserts the collectives (the gradient
  all-reduce), which keeps the train step free of any parallelism code.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split across the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def put_replicated(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host array that every process holds in full -> one global array replicated on all devices.

  `make_array_from_callback` rather than `device_put` so the same call works when other
  processes own some of the devices.
  """
  return jax.make_array_from_callback(x.shape, replicated(mesh), lambda index: x[index])


def _stack_on_local_devices(per_device: list) -> jax.Array:
  """One array per local device (jax.local_devices() order) -> the pmap layout, each slice left
  on its device: a pmap input is this process's part only, so nothing crosses hosts."""
  devices = jax.local_devices()
  sharding = NamedSharding(Mesh(np.asarray(devices), (DATA_AXIS,)), P(DATA_AXIS))
  slices = [jax.device_put(x[None], d) for x, d in zip(per_device, devices, strict=True)]
  return jax.make_array_from_single_device_arrays((len(devices), *slices[0].shape[1:]), sharding,
                                                  slices)


def to_pmap(tree: Any) -> Any:
  """A copy of every leaf on each local device, stacked on a new leading axis (pmap layout).

  A host array is copied to each local device; a replicated global array (the mesh layout)
  contributes the copies this process's devices already hold, so no leaf moves between hosts.
  """
  def leaf(x):
    if not isinstance(x, jax.Array):
      return _stack_on_local_devices([np.asarray(x)] * jax.local_device_count())
    on_device = {s.device: s.data for s in x.addressable_shards}
    if any(v.shape != x.shape for v in on_device.values()):
      raise ValueError(f"to_pmap needs a replicated array, got one sharded as {x.sharding}")
    return _stack_on_local_devices([on_device[d] for d in jax.local_devices()])

  return jax.tree.map(leaf, tree)


def split_to_pmap(x_LxD: np.ndarray) -> jax.Array:
  """This process's rows of a batch -> one contiguous slice per local device (pmap layout).

  pmap numbers the devices process by process, so local device i of process p is replica
  p * local_device_count + i and gets rows i * L/local_device_count onward of this block.
  """
  return _stack_on_local_devices(np.split(x_LxD, jax.local_device_count()))


def from_pmap(tree: Any, mesh: Mesh) -> Any:
  """pmap layout (identical copies) -> one global array per leaf, replicated over the mesh.

  Each process reads its local replica 0 to the host and builds the global array from it, so
  the conversion needs no transfer between hosts.
  """
  return jax.tree.map(lambda x: put_replicated(np.asarray(x.addressable_data(0))[0], mesh), tree)
