"""SIGTERM/SIGINT -> finish the running call, write a checkpoint, exit with code 3.

Cluster schedulers (SLURM, TPU VM maintenance, Kubernetes) announce a preemption with SIGTERM;
Ctrl-C sends SIGINT. Either one only sets a flag, which the loop reads between calls; a second
SIGINT stops at once. In a multi-process run every process must stop at the same step, so the
flags are combined across processes.
"""

import signal
import types

from absl import logging
import jax
import numpy as np


class PreemptionWatcher:

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def __enter__(self) -> "PreemptionWatcher":
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    if signum == signal.SIGINT and self.signal_name == "SIGINT":
      raise KeyboardInterrupt  # A second Ctrl-C: the user wants out now.
    self.signal_name = signal.Signals(signum).name
    logging.warning("%s received: stopping after the running call and writing a checkpoint",
                    self.signal_name)

  def should_stop(self) -> bool:
    """True on every process once any process got a signal (a collective when multi-process)."""
    local = self.signal_name is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array(local))))
