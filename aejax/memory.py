"""Device memory: how much a device has, and how many items of a chunked computation fit a budget.

One rule for a device's memory (`device_memory_bytes`), read by the device-mode data check, the
vectorised group's check and the evaluation's budget. A computation done in chunks (the NLL's
posterior samples, the KL parts' rows) takes as many items per chunk as `budget` allows, each
item costing what `bytes_per_item` measures from the traced program.
"""

import os
from typing import Any, Callable

import jax

from aejax.errors import UserError

# Bytes of device memory to assume instead of asking the devices (where they do not say, or to
# plan for another machine, or to try a refusal on a CPU): e.g. AEJAX_DEVICE_MEMORY_BYTES=16e9.
DEVICE_MEMORY_ENV = "AEJAX_DEVICE_MEMORY_BYTES"
# The share of a device's memory an evaluation's chunks may take when no budget is given: the
# rest holds the parameters, the optimizer state, the (device-mode) data and XLA's own buffers.
EVAL_MEMORY_SHARE = 0.25


def device_memory_bytes() -> tuple[int, str]:
  """(bytes, where the number comes from) of the smallest local device's memory: $DEVICE_MEMORY_ENV
  when set, else the devices' own `bytes_limit` (GPUs, TPUs), else the host's physical memory
  shared by the local CPU devices (JAX reports no limit for them; their arrays live there)."""
  if text := os.environ.get(DEVICE_MEMORY_ENV):
    try:
      value = int(float(text))
    except ValueError:
      value = 0
    if value <= 0:
      raise UserError(f"{DEVICE_MEMORY_ENV}={text!r} is no positive number of bytes; e.g. 16e9")
    return value, f"${DEVICE_MEMORY_ENV}"
  limits = [(device.memory_stats() or {}).get("bytes_limit") for device in jax.local_devices()]
  if all(limits):
    return min(limits), f"the smallest {jax.local_devices()[0].platform} device"
  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return host // jax.local_device_count(), "host memory (CPU devices)"


def eval_budget(explicit: float, knob: str) -> tuple[int, str]:
  """(bytes, what sets them) an evaluation's chunks may take: `explicit` when > 0, else
  EVAL_MEMORY_SHARE of device_memory_bytes(); `knob` names the setting in messages."""
  if explicit > 0:
    return int(explicit), f"{knob}={explicit:g}"
  memory, source = device_memory_bytes()
  return int(EVAL_MEMORY_SHARE * memory), (f"{EVAL_MEMORY_SHARE:.0%} of {memory / 1e9:.2f} GB "
                                           f"({source}; {knob} unset)")


def traced_bytes(fn: Callable, *args: Any) -> int:
  """The peak bytes of the arrays fn(*args) computes, walking its program in order and freeing
  each array after its last use; args may be ShapeDtypeStructs. XLA fuses and reuses buffers,
  so it needs less: per sample of a 32x32x3 conv VAE's log weights, XLA:CPU's temporaries were
  1/1.9 of this with a 5-component logistic decoder, 1/1.45 Bernoulli, 1/1.01 Gaussian."""
  return _peak_bytes(jax.make_jaxpr(fn)(*args).jaxpr)


def _nbytes(var: Any) -> int:
  aval = getattr(var, "aval", None)
  return aval.size * aval.dtype.itemsize if hasattr(aval, "shape") else 0


def _peak_bytes(jaxpr: Any) -> int:
  last_use = {}
  for i, eqn in enumerate(jaxpr.eqns):
    for v in eqn.invars:
      if not hasattr(v, "val"):  # Literals hold no buffer.
        last_use[v] = i
  for v in jaxpr.outvars:
    last_use.pop(v, None)  # Outputs live to the end.
  alive, peak = {}, 0
  for i, eqn in enumerate(jaxpr.eqns):
    inner = 0  # An inner program's (jit, scan and cond bodies) working memory, while it runs.
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          inner = max(inner, _peak_bytes(sub))
    outs = sum(_nbytes(v) for v in eqn.outvars)
    peak = max(peak, sum(alive.values()) + max(inner, outs))
    alive.update({v: _nbytes(v) for v in eqn.outvars})
    for v in eqn.invars:
      if not hasattr(v, "val") and last_use.get(v) == i:
        alive.pop(v, None)
  return peak


def bytes_per_item(fn: Callable[[int], int], n: int = 64) -> int:
  """What one more item costs: fn(m) is the traced bytes of a chunk of m items. The slope from
  n to 2n items leaves out what does not grow with the chunk (parameter-sized arrays, which
  small chunks' peaks can be made of)."""
  return max(-(-(fn(2 * n) - fn(n)) // n), 1)


def items_per_chunk(per_item: int, budget: int, most: int, *, what: str, fix: str) -> int:
  """The number of items per chunk for `most` items, within `budget` bytes, balanced so the
  chunks are of (nearly) equal size; a UserError naming `fix` when one item does not fit."""
  fit = budget // per_item
  if fit < 1:
    raise UserError(f"{what} needs {per_item / 1e9:.2f} GB per chunk at the least, more than "
                    f"its budget of {budget / 1e9:.2f} GB; {fix}")
  num_chunks = -(-most // min(fit, most))
  return -(-most // num_chunks)
