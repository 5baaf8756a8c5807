"""The padded-batch loop of the analyses: a function over any number of rows in fixed-size
batches, the last one padded, so one compiled function serves every row count."""

import time
from typing import Any, Callable

from absl import logging
import jax
import numpy as np

from aejax.data import dataset

LOG_EVERY = 20  # Batches between progress lines, where a caller asks for them.


def map_padded(fn: Callable[..., Any], arrays: tuple[np.ndarray, ...], size: int,
               progress: str | None = None) -> Any:
  """fn(start, *batches) over the rows of `arrays` (all N long) in batches of `size` rows
  (start: the batch's first row), as numpy, its outputs' rows concatenated and trimmed to N;
  `progress` names the work in a log line every LOG_EVERY batches."""
  n = len(arrays[0])
  padded = [dataset.pad_to_multiple(np.asarray(a), size)[0] for a in arrays]
  outs, t0 = [], time.time()
  for start in range(0, len(padded[0]), size):
    outs.append(jax.device_get(fn(start, *(a[start:start + size] for a in padded))))
    if progress and (start == 0 or (start // size + 1) % LOG_EVERY == 0):
      logging.info("%s: %d of %d (%.0fs)", progress, min(start + size, n), n, time.time() - t0)
  if not outs:  # No rows: empty arrays of the right trailing shape.
    shapes = jax.eval_shape(fn, 0, *(jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype)
                                     for a in padded))
    return jax.tree.map(lambda s: np.zeros((0, *s.shape[1:]), s.dtype), shapes)
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)
