"""Flax Linen encoders, decoders and the vector quantiser the autoencoder families are built from
(the families themselves: aejax.families)."""

from aejax.models.conv import CONV_IMPLS

__all__ = ["CONV_IMPLS"]
