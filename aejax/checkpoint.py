"""Orbax checkpoints of the train state plus a small JSON record of the data position.

Saves are asynchronous (training continues while the previous state is written) and atomic
(orbax writes to a temporary directory and renames it when complete), so a run killed mid-save
keeps its previous checkpoint.
"""

from typing import Any

import jax
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  # Handlers named up front (not inferred from the first save) so that a manager that has not
  # saved anything yet can read a checkpoint's metadata: restore_on_one_device needs it.
  handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)))


def restore(mngr: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
  """Restores `step` into the shapes, dtypes and shardings of `like` (arrays or abstract ones).

  The target's shardings decide the placement, so a checkpoint written on 8 devices restores
  onto however many devices this process has.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                        meta=ocp.args.JsonRestore()))
  return restored.state, dict(restored.meta)


def restore_on_one_device(mngr: ocp.CheckpointManager, step: int) -> tuple[Any, dict[str, Any]]:
  """Restores `step` as it was saved (a nested dict of arrays), all on this process's first
  device, whatever device count wrote it: for analysis, where no train state exists yet."""
  metadata = mngr.item_metadata(step).state
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata)
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                        meta=ocp.args.JsonRestore()))
  return restored.state, dict(restored.meta)
