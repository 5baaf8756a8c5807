"""The run directories of a group (a run alone is a group of one), opened and released together.

`GroupDirs.open` checks and creates every workdir and takes its lock; the object then holds each
run's checkpoint manager and metric writer, resumes the group, saves it, records each run's
metrics and divergence, and `close` (or leaving its `with` block, however it is left) waits for
the saves in flight and releases all of it, so a failed group holds nothing.

A run is the unit: a group resumes from the newest step that every one of its runs has
checkpointed (each run's later checkpoints are set aside as `<step>.set-aside` and its metrics
lines after that step moved to metrics.set-aside.jsonl), whatever interrupted the saves; a run
that diverges is recorded in its own directory (a `diverged` line in metrics.jsonl) and keeps its
last good checkpoint while the others go on.
"""

import dataclasses
import os
from typing import Any

from absl import logging
import jax
import ml_collections

from aejax import validation
from aejax.errors import StorageError, UserError
from aejax.run import checkpoint
from aejax.run import lock
from aejax.run import metrics as metrics_lib
from aejax.run import rundir


@dataclasses.dataclass
class Position:
  """Where training stands: epochs done, steps into the next one, and each run's metric sums
  over those steps (what a checkpoint stores beside the state)."""
  epochs_done: int
  epoch_step: int
  sums: list[dict[str, float]]

  def step(self, steps_per_epoch: int) -> int:
    return self.epochs_done * steps_per_epoch + self.epoch_step


class GroupDirs:
  """Checkpoint managers, metric writers and locks of a group's run directories."""

  def __init__(self, workdirs: list[str], configs: list[ml_collections.ConfigDict]):
    self.workdirs, self.configs = workdirs, configs
    self.is_chief = jax.process_index() == 0
    self.live = [True] * len(workdirs)  # False once a run has diverged.
    self.mngrs, self.writers, self._locked = [], [], []

  @classmethod
  def open(cls, workdirs: list[str], configs: list[ml_collections.ConfigDict],
           device_count: int) -> "GroupDirs":
    """Checks each config and workdir, creates the workdir and locks it (process 0), and refuses
    to resume a run under another config; on any refusal, what was locked is released."""
    dirs = cls(workdirs, configs)
    try:
      for c, workdir in zip(configs, workdirs, strict=True):
        validation.validate_config(c, device_count)
        if not workdir:
          raise UserError("--workdir is empty; pass a directory (new, or a run to resume)")
        if os.path.exists(workdir) and not os.path.isdir(workdir):
          raise UserError(f"--workdir={workdir} is a file; pass a directory (new or a run to "
                          f"resume)")
      for c, workdir in zip(configs, workdirs):
        try:
          os.makedirs(workdir, exist_ok=True)
        except OSError as e:  # /proc/x, /dev/null/x, a read-only or full file system.
          raise UserError(f"--workdir={workdir} cannot be created ({e.strerror}); pass a "
                          f"directory on a writable file system") from e
        if dirs.is_chief:  # Before anything is read or written there; the others do not block.
          lock.acquire(workdir)
          dirs._locked.append(workdir)
        rundir.check_resumable(workdir, c)
      for w in workdirs:  # One at a time: those built before a failure are closed by close().
        dirs.mngrs.append(checkpoint.manager(os.path.join(w, rundir.CHECKPOINTS),
                                             configs[0].checkpoint.max_to_keep))
      dirs.writers = [metrics_lib.MetricWriter(w, enabled=dirs.is_chief) for w in workdirs]
    except BaseException:
      dirs.close(raising=False)
      raise
    return dirs

  def __enter__(self) -> "GroupDirs":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self.close(raising=exc_type is None)

  # --- Resume ----------------------------------------------------------------------------------

  def resume(self, layout: Any, like: Any, steps_per_epoch: int,
             allow_fallback: bool) -> tuple[Any, Position] | None:
    """(state, position) at the newest step every run has checkpointed, each run restored onto
    the devices that hold it in `layout`; None when the group starts afresh. `like`: one run's
    abstract state. Lines and checkpoints after that step are set aside (never deleted)."""
    while True:
      steps = [set(m.all_steps()) for m in self.mngrs]
      common = max(set.intersection(*steps), default=None)
      restored = [] if common is not None else None
      for i, mngr in enumerate(self.mngrs if common is not None else []):
        on_its_devices = jax.tree.map(lambda x, s=layout.run_sharding(i): jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=s), like)
        try:
          restored.append(checkpoint.read(mngr, common, on_its_devices))
        except checkpoint.Unreadable as e:
          self._unreadable(i, common, steps[i], e, allow_fallback)
          break
      else:
        break
    metas = [meta for _, meta in restored or []]
    if metas and metas[0]["steps_per_epoch"] != steps_per_epoch:
      raise UserError(f"the checkpoint at step {common} has {metas[0]['steps_per_epoch']} steps "
                      f"per epoch, this config {steps_per_epoch}; resume with the original batch "
                      f"size or use --force_new")
    self._set_aside_after(common, steps)
    for writer in self.writers:  # Lines after the checkpoint describe work about to be redone.
      writer.set_aside_after(common or 0)
    if restored is None:
      return None
    position = Position(metas[0]["epoch"], metas[0]["epoch_step"],
                        [m["metric_sums"] for m in metas])
    return layout.assemble([state for state, _ in restored]), position

  def _unreadable(self, i: int, step: int, steps: set[int], e: Exception,
                  allow_fallback: bool) -> None:
    """Run i's checkpoint `step` cannot be read: an error, or with `allow_fallback` it is set
    aside and the group tries the next older step."""
    older = sorted((s for s in steps if s < step), reverse=True)
    directory = self.mngrs[i].directory
    if not allow_fallback:
      raise UserError(f"the checkpoint at step {step} in {directory} cannot be read ({e}); pass "
                      f"--allow_fallback to resume from an older one (steps {older}) or "
                      f"--force_new to start afresh in a new workdir") from e
    checkpoint.set_aside(self.mngrs[i], step, "unreadable")
    logging.warning("Checkpoint at step %d of %s is unreadable (%s); set aside as %d.unreadable, "
                    "trying the next older one", step, self.workdirs[i], e, step)
    self._reload()
    if not older:
      raise UserError(f"no checkpoint in {directory} can be read; use --force_new") from e

  def _set_aside_after(self, common: int | None, steps: list[set[int]]) -> None:
    if jax.process_count() > 1:  # Every process has listed the steps before process 0 renames.
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("checkpoints listed")
    moved = False
    for i, mngr in enumerate(self.mngrs):
      for step in sorted(s for s in steps[i] if common is None or s > common):
        name = checkpoint.set_aside(mngr, step, "set-aside")
        logging.warning("%s: checkpoint %d set aside as %s: the group resumes from step %s, "
                        "the newest that all its runs have", self.workdirs[i], step, name,
                        common or "0 (a fresh start)")
        moved = True
    if moved:
      self._reload()

  def _reload(self) -> None:
    if jax.process_count() > 1:  # Process 0 renamed; the others read the directory after it.
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("checkpoints set aside")
    for mngr in self.mngrs:
      mngr.reload()

  # --- Writes ----------------------------------------------------------------------------------

  def write_configs(self) -> None:
    if self.is_chief:
      for workdir, c in zip(self.workdirs, self.configs):
        rundir.write_config(workdir, c)

  def save(self, layout: Any, state: Any, position: Position, steps_per_epoch: int) -> None:
    """Starts each live run's checkpoint of `position` (asynchronous); a diverged run keeps its
    last good one."""
    step = position.step(steps_per_epoch)
    for i, mngr in enumerate(self.mngrs):
      if self.live[i]:
        checkpoint.save(mngr, step, layout.take(state, i), {
            "epoch": position.epochs_done, "epoch_step": position.epoch_step,
            "steps_per_epoch": steps_per_epoch, "metric_sums": position.sums[i]})

  def wait(self) -> None:
    for mngr in self.mngrs:
      checkpoint.wait(mngr)

  def diverged(self, i: int, step: int, epoch: int) -> str:
    """Records run i's divergence at `step` (a metrics line) and stops saving it; returns the
    message `aejax.main` reports for it."""
    self.live[i] = False
    checkpoint.wait(self.mngrs[i])  # The last good checkpoint may still be being written.
    good = self.mngrs[i].latest_step()
    where = (f"step {good} in {self.mngrs[i].directory}" if good is not None
             else "none: no checkpoint yet")
    self.writers[i].write(step, epoch, rundir.DIVERGED, {})
    return (f"non-finite loss at step {step} (epoch {epoch}"
            f"{', run ' + self.workdirs[i] if len(self.workdirs) > 1 else ''}); the last good "
            f"checkpoint is {where}, kept intact")

  # --- Release ---------------------------------------------------------------------------------

  def close(self, raising: bool = True) -> None:
    """Waits for the saves in flight, then closes every manager and writer and releases every
    lock, whatever fails on the way. `raising`: the first failed save is raised at the end (on
    an error path it is only logged: the error being handled is the one to report)."""
    failed = None

    def storage_failure(e: StorageError) -> None:
      nonlocal failed
      failed = failed or e
      if not raising:
        logging.error("%s", e)

    for mngr in self.mngrs:
      try:
        checkpoint.wait(mngr)
      except StorageError as e:
        storage_failure(e)
      try:
        mngr.close()
      except Exception as e:  # Closing must not stop the rest from being released.
        logging.error("closing the checkpoint manager of %s: %s", mngr.directory, e)
    for writer in self.writers:
      try:
        writer.close()  # Flushes TensorBoard's events: a write, which a full disk can fail.
      except StorageError as e:
        storage_failure(e)
    for workdir in self._locked:
      lock.release(workdir)
    self.mngrs, self.writers, self._locked = [], [], []
    if failed is not None and raising:
      raise failed
