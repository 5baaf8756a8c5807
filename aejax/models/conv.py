"""Convolutional encoder and decoder: strided convolutions down, transposed convolutions up.

Both speak the same interface as the MLP pair (images -> features, codes -> logits), so every
family (AE, VAE, VQ-VAE) can use them through `config.model.encoder='conv'`.

`conv_impl` picks how each stride-2 4x4 'SAME' (transposed) convolution is computed, on the same
parameters (so checkpoints and initialisation are shared): 'strided' calls it as such;
'space_to_depth' pads by one pixel, folds each 2x2 block into channels and runs a stride-1 2x2
convolution; the transposed one becomes a stride-1 3x3 convolution with 4x the output channels
(one group per output-pixel parity, unused taps zero) and depth-to-space. Both compute the same
function; which is faster depends on the backend.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


CONV_IMPLS = ("strided", "space_to_depth")


def space_to_depth(x_BxHxWxC: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, 4C]; channel order (row parity, column parity, c)."""
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x_BxHxWx4C: jax.Array) -> jax.Array:
  """The inverse of space_to_depth: [B, H, W, 4C] -> [B, 2H, 2W, C]."""
  b, h, w, c4 = x_BxHxWx4C.shape
  x = x_BxHxWx4C.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c4 // 4)


_NHWC = ("NHWC", "HWIO", "NHWC")
_PAD1 = ((0, 0), (1, 1), (1, 1), (0, 0))


def conv_space_to_depth(x, kernel_4x4xIxO, strides, padding, **unused):
  """The stride-2 4x4 'SAME' conv as space-to-depth + a stride-1 2x2 conv (nn.Conv's hook).

  Output i reads padded inputs 2i + k, k = 2a + b: block i + a, parity b. So the 2x2 kernel's
  tap a holds the 4x4 kernel's rows 2a and 2a + 1, in space_to_depth's channel order.
  """
  assert tuple(strides) == (2, 2) and kernel_4x4xIxO.shape[:2] == (4, 4) and padding == "SAME"
  i, o = kernel_4x4xIxO.shape[2:]
  k = kernel_4x4xIxO.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * i, o)
  return jax.lax.conv_general_dilated(space_to_depth(jnp.pad(x, _PAD1)), k, (1, 1), "VALID",
                                      dimension_numbers=_NHWC)


def conv_transpose_depth_to_space(x_BxHxWxI: jax.Array, kernel_4x4xIxO: jax.Array) -> jax.Array:
  """nn.ConvTranspose(strides 2, 4x4, 'SAME') as a stride-1 3x3 conv + depth-to-space.

  Output 2m + p reads inputs m - 1 + t (t = a + p) with kernel tap 2a + p: row parity p uses taps
  t in {p, p + 1} of a 3x3 kernel, the other tap is zero.
  """
  i, o = kernel_4x4xIxO.shape[2:]
  k_AxPxAxPxIxO = kernel_4x4xIxO.reshape(2, 2, 2, 2, i, o)  # [a, p, a', p', i, o].
  k_3x3xIx2x2xO = jnp.zeros((3, 3, i, 2, 2, o), kernel_4x4xIxO.dtype)
  for p in range(2):
    for q in range(2):
      k_3x3xIx2x2xO = k_3x3xIx2x2xO.at[p:p + 2, q:q + 2, :, p, q, :].set(
          k_AxPxAxPxIxO[:, p, :, q])
  y = jax.lax.conv_general_dilated(jnp.pad(x_BxHxWxI, _PAD1),
                                   k_3x3xIx2x2xO.reshape(3, 3, i, 4 * o), (1, 1), "VALID",
                                   dimension_numbers=_NHWC)
  return depth_to_space(y)


class ConvTransposeDepthToSpace(nn.Module):
  """nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME')'s parameters and function,
  computed by conv_transpose_depth_to_space."""

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxI: jax.Array) -> jax.Array:
    # nn.ConvTranspose's initialisers, in its order (kernel, then bias): the same draws.
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, x_BxHxWxI.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x_BxHxWxI, kernel, bias, dtype=self.dtype)
    return conv_transpose_depth_to_space(x, kernel) + bias.reshape(1, 1, 1, -1)


def _conv_transpose(features: int, impl: str, dtype, index: int) -> nn.Module:
  if impl == "space_to_depth":  # Named as nn.ConvTranspose would be, so parameters match.
    return ConvTransposeDepthToSpace(features, dtype=dtype, name=f"ConvTranspose_{index}")
  return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", dtype=dtype)


class ConvEncoder(nn.Module):
  """Images [B, H, W, C] -> features [B, out_features]; each conv halves H and W."""

  channels: Sequence[int]
  out_features: int
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.
  conv_impl: str = "strided"  # One of CONV_IMPLS.
  dense: Sequence[int] = ()  # Widths of hidden dense layers between the convs and the output.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
    h = x_BxHxWxC
    conv_fn = conv_space_to_depth if self.conv_impl == "space_to_depth" else None
    for c in self.channels:
      h = self.activation(nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype,
                                  conv_general_dilated=conv_fn)(h))
    h = h.reshape(h.shape[0], -1)
    for width in self.dense:
      h = self.activation(nn.Dense(width, dtype=self.dtype)(h))
    return nn.Dense(self.out_features, dtype=self.dtype)(h)


class ConvDecoder(nn.Module):
  """Codes [B, Z] -> logits [B, H, W, C]; the mirror of ConvEncoder (channels widest first)."""

  channels: Sequence[int]  # E.g. (64, 32): the encoder's channels reversed.
  image_shape: tuple[int, int, int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.
  conv_impl: str = "strided"  # One of CONV_IMPLS.
  dense: Sequence[int] = ()  # Hidden dense widths from the code up: the encoder's reversed.

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    height, width, out_channels = self.image_shape
    scale = 2 ** len(self.channels)
    h0, w0 = height // scale, width // scale
    h = z_BxZ
    for w in self.dense:
      h = self.activation(nn.Dense(w, dtype=self.dtype)(h))
    h = self.activation(nn.Dense(h0 * w0 * self.channels[0], dtype=self.dtype)(h))
    h = h.reshape(z_BxZ.shape[0], h0, w0, self.channels[0])
    # One upsampling per encoder conv: the widest channels are the coarsest grid.
    for i, c in enumerate(self.channels[1:]):
      h = self.activation(_conv_transpose(c, self.conv_impl, self.dtype, i)(h))
    logits = _conv_transpose(out_channels, self.conv_impl, self.dtype, len(self.channels) - 1)(h)
    assert logits.shape[1:] == tuple(self.image_shape), (logits.shape, self.image_shape)
    return logits


def check_image_shape(channels: Sequence[int], image_shape: tuple[int, ...]) -> str | None:
  """Why the conv pair cannot round-trip `image_shape`, or None if it can: each of the
  len(channels) convs halves H and W exactly, so both must be multiples of 2^len(channels)."""
  if not channels:
    return "config.model.channels is empty; give at least one conv width, e.g. (32, 64)"
  height, width = image_shape[:2]
  scale = 2 ** len(channels)
  if height % scale == 0 and width % scale == 0:
    return None
  # The most halvings these images allow: the power of two that divides both sides.
  fit = min((height & -height).bit_length(), (width & -width).bit_length()) - 1
  near = lambda n: sorted({max(scale, n // scale * scale), -(-n // scale) * scale})
  sizes = lambda n: " or ".join(map(str, near(n)))
  fewer = (f"use at most {fit} conv width{'s' if fit != 1 else ''} for {height}x{width}" if fit
           else f"use config.model.encoder='mlp' for {height}x{width}")
  return (f"config.model.channels={tuple(channels)} halves the images {len(channels)} time"
          f"{'s' if len(channels) != 1 else ''}, so their height and width must be multiples of "
          f"{scale}, and {height}x{width} is not; {fewer}, or "
          f"--config.input.resize (or crop) to a height of {sizes(height)} and a width of "
          f"{sizes(width)}")
