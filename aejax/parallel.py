"""Device mesh and shardings for data parallelism: state replicated, batches split on 'data'."""

from typing import Any

import flax.jax_utils
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


def to_pmap(tree: Any) -> Any:
  """A copy of every leaf on each local device, stacked on a new leading axis (pmap layout)."""
  return flax.jax_utils.replicate(tree)


def from_pmap(tree: Any, mesh: Mesh) -> Any:
  """pmap layout (identical copies) -> one global array per leaf, replicated over the mesh."""
  return jax.tree.map(lambda x: put_replicated(np.asarray(x[0]), mesh), tree)
