"""Flax Linen encoders, decoders and the autoencoder families built from them."""

from aejax.models.autoencoders import AE, VAE, VQVAE
from aejax.models.conv import CONV_IMPLS
from aejax.models.factory import create_model

__all__ = ["AE", "VAE", "VQVAE", "CONV_IMPLS", "create_model"]
