"""config.model -> the encoder and decoder networks a family is built from: explicit tables, not
a registry, so every choice is in view.

The config is checked before it gets here (aejax.validation).
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from aejax import decoder_dists
from aejax.models.conv import ConvDecoder, ConvEncoder
from aejax.models.mlp import MLPDecoder, MLPEncoder

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
               "softplus": nn.softplus}
CODE_ACTIVATIONS = {"none": None, "sigmoid": nn.sigmoid}
ENCODERS = ("mlp", "conv")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # Compute dtypes (config.dtype).


def encoder_decoder(cfg: ml_collections.ConfigDict, out_features: int,
                    image_shape: tuple[int, int, int], dtype: str) -> tuple[nn.Module, nn.Module]:
  """config.model's encoder (images -> `out_features`) and its mirror (codes -> the parameters
  of the decoder's distribution: decoder_dists.DecoderDist.outputs_per_channel per channel)."""
  act, dtype = ACTIVATIONS[cfg.activation], DTYPES[dtype]
  height, width, channels = image_shape
  out_shape = (height, width, channels * decoder_dists.of(cfg).outputs_per_channel)
  if cfg.encoder == "mlp":
    hidden = tuple(cfg.hidden)
    return (MLPEncoder(hidden, out_features, act, dtype=dtype),
            MLPDecoder(hidden[::-1], out_shape, act, dtype=dtype))
  channels, dense = tuple(cfg.channels), tuple(cfg.conv_dense)
  return (ConvEncoder(channels, out_features, act, dtype=dtype, conv_impl=cfg.conv_impl,
                      dense=dense),
          ConvDecoder(channels[::-1], out_shape, act, dtype=dtype,
                      conv_impl=cfg.conv_impl, dense=dense[::-1]))
