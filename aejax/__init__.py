"""aejax: autoencoders in JAX/Flax, data-parallel on accelerators."""

__version__ = "0.1.0"
