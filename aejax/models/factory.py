"""config.model -> a Flax module: an explicit table, not a registry, so every choice is in view.

The config is checked before it gets here (aejax.validation).
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from aejax.models.autoencoders import AE, VAE, VQVAE
from aejax.models.conv import ConvDecoder, ConvEncoder
from aejax.models.mlp import MLPDecoder, MLPEncoder

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
               "softplus": nn.softplus}
CODE_ACTIVATIONS = {"none": None, "sigmoid": nn.sigmoid}
FAMILIES = {"ae": (AE, 1), "vae": (VAE, 2), "vqvae": (VQVAE, 1)}  # -> (class, outputs/latent).
ENCODERS = ("mlp", "conv")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # Compute dtypes (config.dtype).


def _encoder_decoder(cfg, out_features, image_shape, act, dtype):
  if cfg.encoder == "mlp":
    hidden = tuple(cfg.hidden)
    return (MLPEncoder(hidden, out_features, act, dtype=dtype),
            MLPDecoder(hidden[::-1], tuple(image_shape), act, dtype=dtype))
  channels = tuple(cfg.channels)
  return (ConvEncoder(channels, out_features, act, dtype=dtype, conv_impl=cfg.conv_impl),
          ConvDecoder(channels[::-1], tuple(image_shape), act, dtype=dtype,
                      conv_impl=cfg.conv_impl))


def create_model(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 dtype: str = "float32") -> nn.Module:
  family, outputs_per_latent = FAMILIES[cfg.name]
  encoder, decoder = _encoder_decoder(cfg, outputs_per_latent * cfg.latents, image_shape,
                                      ACTIVATIONS[cfg.activation], DTYPES[dtype])
  if cfg.name == "ae":
    return AE(encoder=encoder, decoder=decoder,
              code_activation=CODE_ACTIVATIONS[cfg.code_activation])
  if cfg.name == "vqvae":
    return VQVAE(encoder=encoder, decoder=decoder, codebook_size=cfg.codebook_size,
                 code_dim=cfg.code_dim)
  return family(encoder=encoder, decoder=decoder)
