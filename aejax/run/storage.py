"""How aejax writes files, so that a full disk or an unwritable file system is one line, exit 5.

Small files are written whole under a temporary name and renamed (a crash leaves the old file or
the new one, never half of one); appends (metrics.jsonl) may leave a cut-off last line, which
rundir's reader ignores and the resume sets aside. Checkpoints are orbax's (checkpoint.py).
"""

import contextlib
import os
import re
import shutil
import socket
import time
from typing import IO, Iterator

from absl import logging

from aejax.errors import StorageError


def free_space(path: str) -> str:
  """'12.0 kB free' on the file system holding `path` (or its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    free = shutil.disk_usage(path).free
  except OSError:
    return "free space unknown"
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if free >= size:
      return f"{free / size:.1f} {unit} free"
  return f"{free} B free"


def error(path: str, e: OSError) -> StorageError:
  return StorageError(f"could not write {path} ({e.strerror or e}; {free_space(path)} there); "
                      f"free space (or fix permissions) and re-run the same command")


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
  """Turns an OSError of the writes inside into StorageError naming `path`."""
  try:
    yield
  except OSError as e:
    raise error(path, e) from e


TEMP_SUFFIX = ".tmp"
STALE_TEMP_SECONDS = 3600  # A writer takes seconds; an older temporary file is a killed one's.


def temp_path(path: str) -> str:
  """Where this process writes `path` before renaming it: unique even among the hosts that
  share a file system (a data dir on a cluster)."""
  return f"{path}.{socket.gethostname()}.{os.getpid()}{TEMP_SUFFIX}"


@contextlib.contextmanager
def atomic(path: str, mode: str = "w") -> Iterator[IO]:
  """A file to write `path` through: renamed onto it when the block ends without an error,
  removed otherwise; an OSError is StorageError naming `path`."""
  tmp = temp_path(path)
  try:
    with writing(path):
      with open(tmp, mode) as f:
        yield f
      os.replace(tmp, path)
  finally:
    with contextlib.suppress(OSError):
      os.remove(tmp)


def remove_killed_temps(directory: str) -> None:
  """Removes the temporary files (temp_path) in `directory` whose writers were killed: this
  host's whose process is gone, and any host's older than STALE_TEMP_SECONDS (another host's
  process cannot be asked)."""
  mine = re.compile(rf".*\.{re.escape(socket.gethostname())}\.(\d+){re.escape(TEMP_SUFFIX)}")
  with contextlib.suppress(OSError):
    for name in os.listdir(directory):
      if not name.endswith(TEMP_SUFFIX):
        continue
      path, pid = os.path.join(directory, name), mine.fullmatch(name)
      with contextlib.suppress(OSError):
        if (pid and not _alive(int(pid.group(1)))) or (
            time.time() - os.stat(path).st_mtime > STALE_TEMP_SECONDS):
          os.remove(path)
          logging.info("Removed %s, left by a killed writer", path)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True
