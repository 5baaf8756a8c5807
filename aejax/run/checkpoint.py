"""Orbax checkpoints of the train state plus a small JSON record of the data position.

Saves are asynchronous (training continues while the previous state is written) and atomic
(orbax writes to a temporary directory and renames it when complete), so a run killed mid-save
keeps its previous checkpoint. Nothing here uses pickle: arrays go through TensorStore, the
position through JSON.
"""

import contextlib
import gc
import logging as py_logging
import os
import sys
from typing import Any, Iterator

from absl import logging
import jax
import orbax.checkpoint as ocp

from aejax.errors import StorageError, UserError


def manager(directory: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  # Handlers named up front (not inferred from the first save) so that a manager that has not
  # saved anything yet can read a checkpoint's metadata: restore_on_one_device needs it.
  handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _storage_error(e: OSError, directory: str) -> StorageError:
  return StorageError(f"could not write a checkpoint under {directory} ({e.strerror or e}); "
                      f"free space or fix permissions and re-run to resume from the last one")


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  try:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            meta=ocp.args.JsonSave(meta)))
  except OSError as e:  # Also raised here for the previous asynchronous save.
    raise _storage_error(e, str(mngr.directory)) from e


def wait(mngr: ocp.CheckpointManager) -> None:
  """Blocks until the asynchronous saves are on disk."""
  try:
    mngr.wait_until_finished()
  except OSError as e:
    raise _storage_error(e, str(mngr.directory)) from e


def restore(mngr: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
  """Restores `step` into the shapes, dtypes and shardings of `like` (arrays or abstract ones).

  The target's shardings decide the placement, so a checkpoint written on 8 devices restores
  onto however many devices this process has.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                        meta=ocp.args.JsonRestore()))
  return restored.state, dict(restored.meta)


@contextlib.contextmanager
def _orbax_logs_silenced() -> Iterator[None]:
  """Quiet while a possibly damaged checkpoint is read: restore_latest reports it in one line.

  Orbax logs the failure's traceback itself, and the reads it abandons leave asyncio tasks and
  coroutines whose errors Python prints when they are collected; they are collected here.
  """
  only_not_orbax = lambda r: "/orbax/" not in r.pathname or r.levelno >= py_logging.CRITICAL
  absl_logger, asyncio_logger = logging.get_absl_logger(), py_logging.getLogger("asyncio")
  absl_logger.addFilter(only_not_orbax)
  asyncio_logger.disabled, hook = True, sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()  # Abandoned reads report their errors now, while they are silenced.
    absl_logger.removeFilter(only_not_orbax)
    asyncio_logger.disabled, sys.unraisablehook = False, hook


def restore_latest(mngr: ocp.CheckpointManager, like: Any,
                   allow_fallback: bool) -> tuple[int, Any, dict[str, Any]] | None:
  """(step, state, meta) of the newest checkpoint, or None when there is none.

  An unreadable newest checkpoint is an error unless `allow_fallback`; then it is set aside as
  `<step>.unreadable` (not deleted) and the next older one is tried.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    try:
      with _orbax_logs_silenced():
        return (step, *restore(mngr, step, like))
    except Exception as e:  # Orbax/TensorStore raise many types for a damaged checkpoint.
      reason = " ".join(str(e).split()).split(" See full")[0][:200]
      if not allow_fallback:
        raise UserError(
            f"the checkpoint at step {step} in {mngr.directory} cannot be read ({reason}); pass "
            f"--allow_fallback to resume from an older one (steps {steps[i + 1:]}) or "
            f"--force_new to start afresh in a new workdir") from e
      if jax.process_index() == 0:
        bad = os.path.join(str(mngr.directory), str(step))
        os.replace(bad, bad + ".unreadable")
      logging.warning("Checkpoint at step %d is unreadable (%s); set aside as %d.unreadable, "
                      "trying the next older one", step, reason, step)
      mngr.reload()
  if steps and allow_fallback:
    raise UserError(f"no checkpoint in {mngr.directory} can be read; use --force_new")
  return None


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
