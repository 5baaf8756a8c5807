"""aejax: autoencoders in JAX/Flax, data-parallel on accelerators."""

__version__ = "0.1.0"

# `aejax.restore` (in aejax/analysis/restored.py) loads JAX, Flax and Orbax only when first used,
# so `import aejax` stays light.
_LAZY = ("restore", "Restored")


def __getattr__(name: str):
  if name in _LAZY:
    from aejax.analysis import restored
    return getattr(restored, name)
  raise AttributeError(f"module 'aejax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted({*globals(), *_LAZY} - {"_LAZY"})
