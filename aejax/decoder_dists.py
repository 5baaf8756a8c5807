"""The decoder's distribution p(x|z) over pixels in [0, 1] (config.model.decoder_dist): how many
outputs per image channel the decoder network gives, log p(x|z) of an image, and the pixel means
that images are drawn with. The densities are aejax.losses'; this is the one place that reads
the decoder's outputs (named 'logits' in the families' outputs whatever the distribution).

  bernoulli  one logit per pixel: binary pixels (MNIST binarised), or the cross-entropy against
             grey levels. Its mean is the sigmoid of the logit.
  gaussian   N(mean, std^2) per pixel: std = config.model.decoder_std if > 0 (fixed), else
             learned per pixel (the decoder also outputs its log). A density on the values in
             [0, 1], so its log p(x) is not a probability and can be positive.
  logistic   a logistic per pixel discretised to the 256 levels of 8-bit images (Salimans et
             al., 2017) with a learned per-pixel scale, or with config.model.decoder_components
             = M > 1 a mixture of M of them, its weights learned per pixel (each channel its
             own mixture; PixelCNN++ also couples the channels, which an autoencoder's
             decoder, predicting every pixel at once, does not): a probability, so its NLL in
             bits per dimension compares with the published values of 8-bit image models.

A learned log-scale is kept at or above MIN_LOG_SCALE, as PixelCNN++ does: the likelihood of a
pixel the decoder predicts exactly (MNIST's black background) stays finite.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from aejax import losses

DISTS = ("bernoulli", "gaussian", "logistic")
MIN_LOG_SCALE = -7.0


@dataclasses.dataclass(frozen=True)
class DecoderDist:
  name: str = "bernoulli"  # One of DISTS.
  std: float = 0.0  # 'gaussian': a fixed standard deviation; 0: learned per pixel.
  components: int = 1  # 'logistic': a mixture of this many.

  @property
  def _is_mixture(self) -> bool:
    return self.name == "logistic" and self.components > 1

  @property
  def outputs_per_channel(self) -> int:
    if self._is_mixture:
      return 3 * self.components  # Weights' logits, locations, log-scales.
    return 2 if self.name == "logistic" or (self.name == "gaussian" and not self.std) else 1

  def _split(self, out_NxHxWxP: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """(location, log-scale or None) of each pixel: the decoder's P = outputs_per_channel x C
    channels, the locations first."""
    if self.outputs_per_channel == 1:
      return out_NxHxWxP, None
    loc, log_scale = jnp.split(out_NxHxWxP, 2, axis=-1)
    return loc, jnp.maximum(log_scale, MIN_LOG_SCALE)

  def _mixture(self, out_NxHxWxP: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(log-weights, locations, log-scales) of a mixture, each [N, H, W, M, C]: the decoder's
    channels are M x C weight logits, then M x C locations, then M x C log-scales."""
    shape = (*out_NxHxWxP.shape[:-1], self.components, -1)
    logits, loc, log_scale = (v.reshape(shape) for v in jnp.split(out_NxHxWxP, 3, axis=-1))
    return (jax.nn.log_softmax(logits, axis=-2), loc, jnp.maximum(log_scale, MIN_LOG_SCALE))

  def log_prob(self, out_NxHxWxP: jax.Array, x_NxHxWxC: jax.Array) -> jax.Array:
    """log p(x|z) of each image, summed over its pixels in float32: [N]. Leading axes of the
    outputs beyond x's (e.g. K samples of each image) are broadcast: [K, N]."""
    out_NxHxWxP = out_NxHxWxP.astype(jnp.float32)
    if self._is_mixture:
      log_w, loc, log_scale = self._mixture(out_NxHxWxP)
      x = jnp.broadcast_to(x_NxHxWxC[..., None, :], loc.shape)
      log_p = jax.nn.logsumexp(log_w + losses.discretized_logistic_log_prob(x, loc, log_scale),
                               axis=-2)
    else:
      loc, log_scale = self._split(out_NxHxWxP)
      x = jnp.broadcast_to(x_NxHxWxC, loc.shape)
      if self.name == "bernoulli":
        log_p = losses.bernoulli_log_prob(loc, x)
      elif self.name == "gaussian":
        if log_scale is None:
          log_scale = jnp.full_like(loc, jnp.log(self.std))
        log_p = losses.gaussian_log_prob(x, loc, log_scale)
      elif self.name == "logistic":
        log_p = losses.discretized_logistic_log_prob(x, loc, log_scale)
      else:
        raise ValueError(f"unknown decoder distribution {self.name!r}; use one of {DISTS}")
    # Summed as [..., H x W x C], the layout losses sums every per-image term in.
    return jnp.sum(log_p.reshape(*log_p.shape[:-3], -1), axis=-1)

  def mean(self, out_NxHxWxP: jax.Array) -> jax.Array:
    """The pixel values an image is shown with, in [0, 1]: [N, H, W, C]. The Bernoulli's mean;
    the Gaussian's, and the logistic's location (its mean inside the grid), clipped to [0, 1];
    a mixture's weighted mean of them."""
    out_NxHxWxP = out_NxHxWxP.astype(jnp.float32)
    if self._is_mixture:
      log_w, loc, _ = self._mixture(out_NxHxWxP)
      return jnp.sum(jnp.exp(log_w) * jnp.clip(loc, 0.0, 1.0), axis=-2)
    loc, _ = self._split(out_NxHxWxP)
    return jax.nn.sigmoid(loc) if self.name == "bernoulli" else jnp.clip(loc, 0.0, 1.0)


def of(model_cfg: ml_collections.ConfigDict) -> DecoderDist:
  """config.model's decoder distribution."""
  return DecoderDist(model_cfg.decoder_dist, float(model_cfg.decoder_std),
                     int(model_cfg.decoder_components))
