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
import re
import shutil
import sys
import time
import traceback
from typing import Any, Iterator

from absl import logging
import jax
import orbax.checkpoint as ocp

from aejax.errors import StorageError
from aejax.run import storage


def manager(directory: str, max_to_keep: int, writer: bool = True) -> ocp.CheckpointManager:
  """The writer's manager removes the temporary directories of saves that were killed, whatever
  step they were writing; a reader's (a restore for analysis) leaves them, as one may be the
  save of a run in progress."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         cleanup_tmp_directories=writer)
  # Handlers named up front (not inferred from the first save) so that a manager that has not
  # saved anything yet can read a checkpoint's metadata.
  handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


LOG = "orbax.log"  # In the workdir: what orbax logs and prints about a failed save.

_in_flight: dict[ocp.CheckpointManager, int] = {}  # The step each manager is writing.
_log_path: str | None = None


def _to_log(text: str, path: str | None = None) -> None:
  # Best effort: on a full disk this write fails too, and the one-line error says what matters.
  try:
    with open(path or _log_path, "a") as f:
      f.write(text if text.endswith("\n") else text + "\n")
  except (OSError, TypeError):
    pass


def _from_orbax(tb: Any) -> bool:
  names = "".join(f.f_code.co_filename for f, _ in traceback.walk_tb(tb))
  return any(n in names for n in ("/orbax/", "/tensorstore/", "/asyncio/"))


def _route_orbax_output(workdir: str) -> None:
  """Sends orbax's log records, and the tracebacks that the writes of a failed asynchronous save
  print from their threads, to <workdir>/orbax.log instead of the console: a failed save is
  reported by `wait`/`save` in one line. Installed once per process; later calls move the file."""
  global _log_path
  first, _log_path = _log_path is None, os.path.join(workdir, LOG)
  if not first:
    return

  def orbax_to_log(record: py_logging.LogRecord) -> bool:
    if "/orbax/" not in record.pathname:
      return True
    _to_log(f"{record.levelname} {time.strftime('%H:%M:%S')} {os.path.basename(record.pathname)}"
            f":{record.lineno}] {record.getMessage()}")
    return False

  logging.get_absl_logger().addFilter(orbax_to_log)
  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def except_to_log(kind, value, tb):  # TensorStore callbacks into orbax's closed event loop.
    if not _from_orbax(tb):
      return excepthook(kind, value, tb)
    _to_log("".join(traceback.format_exception(kind, value, tb)))

  def unraisable_to_log(u):  # Coroutines of the abandoned writes, when collected.
    if not _from_orbax(u.exc_traceback):
      return unraisablehook(u)
    _to_log(f"{u.err_msg or 'Exception ignored in'}: {u.object!r}\n"
            + "".join(traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback)))

  sys.excepthook, sys.unraisablehook = except_to_log, unraisable_to_log


def _cause(e: Exception) -> str:
  """The OS's words for why a write failed ('No space left on device'), else orbax's first line."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  if code := re.search(r"os_error_code='?(\d+)", str(e)):
    return os.strerror(int(code.group(1)))
  return " ".join(str(e).split())[:200] or type(e).__name__


def _failed(mngr: ocp.CheckpointManager, step: int, e: Exception) -> StorageError:
  """Removes the failed save's temporary directory, so that a resume after freeing space finds
  only intact checkpoints, and names the newest of them."""
  directory = str(mngr.directory)
  _in_flight.pop(mngr, None)
  if jax.process_index() == 0:
    for name in os.listdir(directory):
      if name.startswith(f"{step}.orbax-checkpoint-tmp"):
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
  intact = sorted(ocp.utils.checkpoint_steps(directory))
  resume = (f"the newest intact checkpoint is step {intact[-1]}; free space (or fix "
            f"permissions) and re-run the same command to resume from it" if intact else
            "no checkpoint is intact yet; free space (or fix permissions) and re-run the same "
            "command to start again")
  log = os.path.join(os.path.dirname(directory), LOG)  # This run's own, whatever ran last.
  _to_log("".join(traceback.format_exception(e)), log)
  return StorageError(f"could not write the checkpoint at step {step} under {directory} "
                      f"({_cause(e)}; {storage.free_space(directory)} there); {resume} (orbax's "
                      f"log: {log})")


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  """Starts writing `step` in the background; first waits for the previous save, so that its
  failure, if any, is reported with its own step."""
  wait(mngr)
  _route_orbax_output(os.path.dirname(str(mngr.directory)))
  _in_flight[mngr] = step
  try:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            meta=ocp.args.JsonSave(meta)))
  except Exception as e:  # Orbax raises OSError, ValueError (TensorStore) and more.
    raise _failed(mngr, step, e) from e


def wait(mngr: ocp.CheckpointManager) -> None:
  """Blocks until the asynchronous saves are on disk; StorageError if one failed."""
  try:
    mngr.wait_until_finished()
  except Exception as e:
    raise _failed(mngr, _in_flight.get(mngr, -1), e) from e
  _in_flight.pop(mngr, None)


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
  """Quiet while a possibly damaged checkpoint is read: `read` reports it in one line.

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


class Unreadable(Exception):
  """A checkpoint that cannot be read; the message is orbax's reason, on one line."""


def read(mngr: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
  """`restore`, quietly; a damaged checkpoint raises Unreadable with the reason in one line."""
  try:
    with _orbax_logs_silenced():
      return restore(mngr, step, like)
  except Exception as e:  # Orbax/TensorStore raise many types for a damaged checkpoint.
    raise Unreadable(" ".join(str(e).split()).split(" See full")[0][:200]) from e


def set_aside(mngr: ocp.CheckpointManager, step: int, suffix: str) -> str:
  """Renames checkpoint `step` to `<step>.<suffix>` (nothing is deleted; orbax no longer sees
  it) and returns the new name. Only process 0 renames; every process re-reads the directory."""
  name = f"{step}.{suffix}"
  if jax.process_index() == 0:
    directory = str(mngr.directory)
    n = 1
    while os.path.exists(os.path.join(directory, name)):
      n += 1
      name = f"{step}.{suffix}-{n}"
    os.replace(os.path.join(directory, str(step)), os.path.join(directory, name))
  return name
