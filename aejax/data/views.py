"""What the model sees of each stored image: an optional centre crop, then an optional resize.

`config.input.crop` and `config.input.resize` (each off, one size for a square, or (H, W)) turn
the prepared dataset's images into the model's; `View` is applied in one place for both input
modes, per image, to uint8 images on the host: `dataset.load_split` (device mode, the test split,
aejax.analyze) and `input_pipeline.ReadImages` (stream mode). Each image's result depends on that
image alone, so both modes train on the same pixels whatever the batch.

The crop keeps the centre: rows (H - h) // 2 onwards (one more row below than above when the
difference is odd), columns likewise. The resize is PIL's bilinear filter, which widens its
support when shrinking (antialiased, like torchvision's Resize), applied channel by channel and
rounded back to uint8. CelebA's usual preprocessing, a centre crop of 140 (or 148) then a resize
to 64, is `--config.input.crop=140 --config.input.resize=64`.
"""

import dataclasses

import numpy as np

from aejax.errors import UserError


def size(value, field: str) -> tuple[int, int] | None:
  """A config size as (H, W), or None when off: None, 0, (), (0,), (None,) are off; (s,) or s is
  an s x s square; (h, w) is h x w."""
  if value is None or isinstance(value, int) and not isinstance(value, bool):
    value = (value,)
  value = tuple(value)
  if value in ((), (None,), (0,)):
    return None
  if (len(value) not in (1, 2)
      or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
    raise UserError(f"config.{field}={value!r} is no image size; give one positive size for a "
                    f"square, e.g. 64, or height and width, e.g. \"(64, 48)\"; 0 turns it off")
  return (value[0], value[-1])


@dataclasses.dataclass(frozen=True)
class View:
  """Centre crop to `crop`, then resize to `resize` (each (H, W), or None: off)."""
  crop: tuple[int, int] | None = None
  resize: tuple[int, int] | None = None

  def __bool__(self) -> bool:
    return bool(self.crop or self.resize)

  def shape(self, stored_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The model's image shape for images stored as `stored_shape` (H, W, C); a crop larger than
    the images is a UserError."""
    height, width, channels = stored_shape
    if self.crop:
      if self.crop[0] > height or self.crop[1] > width:
        raise UserError(f"config.input.crop={self.crop[0]}x{self.crop[1]} exceeds the "
                        f"{height}x{width} images; crop to at most {height}x{width}")
      height, width = self.crop
    if self.resize:
      height, width = self.resize
    return (height, width, channels)

  def __call__(self, images_NxHxWxC: np.ndarray) -> np.ndarray:
    """The view of each uint8 image (the images themselves when the view is off)."""
    if not self:
      return images_NxHxWxC
    x = images_NxHxWxC
    if self.crop:
      top, left = (x.shape[1] - self.crop[0]) // 2, (x.shape[2] - self.crop[1]) // 2
      x = x[:, top:top + self.crop[0], left:left + self.crop[1]]
    if self.resize and self.resize != x.shape[1:3]:
      x = np.stack([_resize(image, self.resize) for image in x]) if len(x) else np.zeros(
          (0, *self.resize, x.shape[3]), np.uint8)
    return np.ascontiguousarray(x)


def _resize(image_HxWxC: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  from PIL import Image

  # Channel by channel as 8-bit grey images: any channel count, each channel filtered alike.
  return np.stack([np.asarray(Image.fromarray(image_HxWxC[:, :, c]).resize(
      (size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)) for c in range(image_HxWxC.shape[2])],
                  axis=-1)


def from_config(config) -> View:
  """The view of `config.input` (a run saved before these fields existed: none)."""
  return View(size(config.input.get("crop"), "input.crop"),
              size(config.input.get("resize"), "input.resize"))
