"""aejax: autoencoders in JAX/Flax, data-parallel on accelerators."""

__version__ = "0.1.0"


def __getattr__(name: str):
  # `aejax.restore` (in aejax/analysis/restored.py) loads JAX, Flax and Orbax only when first used, so
  # `import aejax` stays light.
  if name in ("restore", "Restored"):
    from aejax.analysis import restored
    return getattr(restored, name)
  raise AttributeError(f"module 'aejax' has no attribute {name!r}")
