"""One writer per run directory: an exclusive `fcntl.flock` on `<workdir>/.lock`.

The kernel holds the lock for the open file and drops it when the process ends, however it ends
(SIGKILL and crashes included), so a lock file left by a dead process never blocks: its presence
means nothing, only the flock does. The holder writes its pid and host into the file so that a
second process can name it. A lock is held until `release` or the end of the process; a process
may acquire a workdir it already holds (a library caller resuming in-process).
"""

import fcntl
import os
import socket

from aejax.errors import UserError
from aejax.run import storage

FILENAME = ".lock"

_held: dict[str, int] = {}  # realpath of workdir -> the open, locked file descriptor.


def acquire(workdir: str) -> None:
  """Locks `workdir` (creating it) for this process, or raises UserError naming the holder."""
  key = os.path.realpath(workdir)
  if key in _held:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, FILENAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").split()
      pid, host = (holder + ["?", "?"])[:2]
      raise UserError(
          f"{workdir} is in use by pid {pid} on host {host} (another aejax run or analysis "
          f"writes there); wait for it to finish, or kill it, or pass another --workdir"
      ) from None
    with storage.writing(path):  # A full disk or quota: exit 5 naming the file.
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
  except BaseException:
    os.close(fd)  # The flock goes with the descriptor: nothing stays held.
    raise
  _held[key] = fd


def release(workdir: str) -> None:
  """Unlocks `workdir` if this process holds it; the file stays (empty), as deleting it would
  let two processes lock two different files of the same name."""
  fd = _held.pop(os.path.realpath(workdir), None)
  if fd is not None:
    os.ftruncate(fd, 0)
    os.close(fd)  # Closing the only descriptor of the open file drops the flock.
