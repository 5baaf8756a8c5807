"""How aejax writes files, so that a full disk or an unwritable file system is one line, exit 5.

Small files are written whole under a temporary name and renamed (a crash leaves the old file or
the new one, never half of one); appends (metrics.jsonl) may leave a cut-off last line, which
rundir's reader ignores and the resume drops. Checkpoints are orbax's (checkpoint.py).
"""

import contextlib
import os
import shutil
from typing import IO, Iterator

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


@contextlib.contextmanager
def atomic(path: str, mode: str = "w") -> Iterator[IO]:
  """A file to write `path` through: renamed onto it when the block ends without an error,
  removed otherwise; an OSError is StorageError naming `path`."""
  tmp = f"{path}.{os.getpid()}.tmp"  # Not another process's temporary file.
  try:
    with writing(path):
      with open(tmp, mode) as f:
        yield f
      os.replace(tmp, path)
  finally:
    with contextlib.suppress(OSError):
      os.remove(tmp)
