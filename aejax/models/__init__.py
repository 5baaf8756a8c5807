"""Flax Linen encoders, decoders and the autoencoder families built from them."""

from aejax.models.autoencoders import AE, VAE, VQVAE
from aejax.models.factory import create_model

__all__ = ["AE", "VAE", "VQVAE", "create_model"]
