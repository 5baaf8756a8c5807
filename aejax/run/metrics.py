"""Where metrics go: metrics.jsonl, TensorBoard event files and the console.

Only process 0 writes; the other processes get a writer that does nothing, so callers need no
`if jax.process_index() == 0` of their own.
"""

import json
import os
import time
from typing import Any

from aejax.run import rundir
from aejax.run import storage


# The fields of every metrics.jsonl line that say where and when it was written, not a metric.
RECORD_FIELDS = ("step", "epoch", "split", "time")


def _is_finite_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and v == v and v not in (float("inf"), float("-inf"))


class MetricWriter:
  """Appends one JSON object per line to `<workdir>/metrics.jsonl` and mirrors it to TensorBoard."""

  def __init__(self, workdir: str, enabled: bool = True):
    self._workdir, self.path = workdir, os.path.join(workdir, rundir.METRICS)
    self._enabled = enabled
    self._tb_dir = os.path.join(workdir, "tensorboard")
    self._tb = None  # Opened at the first write, so a run that fails early leaves no new file.

  def set_aside_after(self, step: int) -> None:
    """Sets aside the lines written after `step` (the work they describe is being redone on
    resume) and a last line cut off by a crash or a full disk (rundir.set_aside_metrics_after)."""
    if self._enabled:
      rundir.set_aside_metrics_after(self._workdir, step)

  def write(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
    if not self._enabled:
      return
    # `time` (unix seconds at writing) lets aejax.compare report a run's wall time.
    record = dict(zip(RECORD_FIELDS, (step, epoch, split, time.time())))
    record.update({k: float(v) for k, v in values.items()})
    # An append, not a rewrite: a write cut short leaves a last line without its newline, which
    # the reader ignores and the resume drops.
    with storage.writing(self.path), open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    with storage.writing(self._tb_dir):
      if self._tb is None:
        import tensorboardX  # Writes event files without TensorFlow.
        self._tb = tensorboardX.SummaryWriter(self._tb_dir)
      for k, v in values.items():
        if _is_finite_number(float(v)):
          self._tb.add_scalar(f"{split}/{k}", float(v), step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      with storage.writing(self._tb_dir):
        self._tb.close()


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
