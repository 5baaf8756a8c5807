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
  return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


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
