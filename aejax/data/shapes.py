"""A dSprites-like dataset of 2-D shapes, rendered offline and stored as a prepared TFDS dataset.

The factors are dSprites' (Matthey et al. 2017), in its order: shape (square, ellipse, heart),
scale (6 values, linearly 0.5 to 1), orientation (40 values, 0 to 2 pi, both ends included, so the
first and last orientation draw the same image, as in the original), x position and y position
(32 values each, linearly 0 to 1). Image n of the `train` split is the n-th combination in
row-major order of these factors (the last factor, y position, varies fastest), so 3 x 6 x 40 x 32
x 32 = 737,280 images of 64 x 64 pixels. Each example holds `image` (uint8, 0 or 255 for the
binary images), `factors` (int32 [5], the index of each factor's value) and `factor_values`
(float32 [5]: shape 0, 1, 2 for square, ellipse, heart; then scale, orientation in radians, x, y);
there is no `label` feature, so aejax reads it as an unlabelled image dataset.

dSprites' rendering code was never published; this is a re-rendering with the same factor
structure, so numbers measured on it are comparable in kind, not in value, with papers on the
original. The rasterisation rule, in pixels, for the 64 x 64 image:
- pixel (row i, column j) has its centre at x = j + 0.5, y = i + 0.5 (y grows downwards) and is on
  (255) exactly when its centre lies in the shape (the boundary included), else off (0);
- the shape's centre is at x = 16 + 32 * (x position), y = 16 + 32 * (y position): 16 to 48 px;
- with dx = x - cx, dy = y - cy and the orientation t, the shape's own coordinates are
  u = cos(t) dx + sin(t) dy and v = -sin(t) dx + cos(t) dy (the shape turns by t from the x axis
  towards the y axis), and at scale s
  - square: max(|u|, |v|) <= 10 s (a side of 20 px at scale 1),
  - ellipse: (u / 12 s)^2 + (v / 6 s)^2 <= 1 (axes of 24 and 12 px at scale 1, the long one along
    u),
  - heart: (p^2 + q^2 - 1)^3 <= p^2 q^3 with p = u / 9 s, q = -v / 9 s (its tip towards +v);
  every shape stays inside the image at every position (the square's corners reach 14.2 px from
  its centre, the heart 12.3 px, the ellipse 12 px).

Variants, as disentanglement_lib's (data/ground_truth/dsprites.py), with their random draws made
once per image from `seed` in factor order and stored (the reference draws them afresh at every
sample): `color` (color_dsprites) multiplies the shape by a colour drawn uniformly from
[0.5, 1)^3 per image, stored as round(255 c), so a shape pixel is 128 or more in every channel;
`noisy` (noisy_dsprites) puts the white shape on a background of uniform noise per pixel and
channel, stored as integers drawn uniformly from 0 .. 254, so only shape pixels are 255 in all
three channels.
"""

import dataclasses
import itertools
import os

from absl import logging
import numpy as np

from aejax.errors import UserError

VERSION = "1.0.0"
SPLIT = "train"  # The one split: every factor combination once, in factor order.
SIZE = 64
FACTOR_NAMES = ("shape", "scale", "orientation", "x_position", "y_position")
FULL_GRID = (3, 6, 40, 32, 32)
GRIDS = {"full": FULL_GRID, "small": (3, 6, 10, 16, 16)}
VARIANTS = ("binary", "color", "noisy")
# Pixels at scale 1: the square's half side, the ellipse's semi-axes, the heart's unit.
SQUARE_HALF, ELLIPSE_AXES, HEART_UNIT = 10.0, (12.0, 6.0), 9.0
# Images rendered together: about 16 MB per float32 array of the chunk.
CHUNK = 1024


def factor_values(grid: tuple[int, ...] = FULL_GRID) -> list[np.ndarray]:
  """Each factor's values on `grid`: every (full / count)-th value of the full grid's, from the
  first, so a smaller grid holds a subset of the full dataset's factor values."""
  full = [np.arange(3, dtype=np.float64), np.linspace(0.5, 1.0, 6),
          np.linspace(0.0, 2 * np.pi, 40), np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)]
  return [values[::len(values) // count] for values, count in zip(full, grid)]


def parse_grid(text: str) -> tuple[int, ...]:
  """--grid: a name of GRIDS or five counts 'shapes,scales,orientations,x,y', each dividing the
  full grid's count (3, 6, 40, 32, 32)."""
  if text in GRIDS:
    return GRIDS[text]
  try:
    grid = tuple(int(c) for c in text.split(","))
  except ValueError:
    grid = ()
  if len(grid) != len(FULL_GRID):
    raise UserError(f"--grid={text!r} is neither {' nor '.join(GRIDS)} nor five counts "
                    f"'shapes,scales,orientations,x,y' such as 3,6,10,16,16")
  for name, count, full in zip(FACTOR_NAMES, grid, FULL_GRID):
    if count < 1 or full % count:
      divisors = [d for d in range(1, full + 1) if full % d == 0]
      raise UserError(f"--grid={text!r}: {count} {name} values do not divide the full grid's "
                      f"{full}; use one of {divisors}")
  return grid


def dataset_name(variant: str, grid: tuple[int, ...]) -> str:
  """shapes2d[_color|_noisy][_small|_3x6x10x16x16]: each variant and grid its own dataset."""
  name = "shapes2d" + ("" if variant == "binary" else f"_{variant}")
  small = {v: k for k, v in GRIDS.items()}.get(grid) or "x".join(map(str, grid))
  return name if grid == FULL_GRID else f"{name}_{small}"


def render(factors_NxK: np.ndarray, grid: tuple[int, ...] = FULL_GRID) -> np.ndarray:
  """[N, 64, 64] bool masks of the given factor indices, by the module docstring's rule."""
  values = factor_values(grid)
  scale_N, angle_N, x_N, y_N = (values[k][factors_NxK[:, k]].astype(np.float32)
                                for k in range(1, 5))
  centre_P = np.arange(SIZE, dtype=np.float32) + np.float32(0.5)
  dx_NxP = centre_P[None] - (16 + 32 * x_N)[:, None]
  dy_NxP = centre_P[None] - (16 + 32 * y_N)[:, None]
  cos_N11, sin_N11 = np.cos(angle_N)[:, None, None], np.sin(angle_N)[:, None, None]
  # Rows are y, columns x: [N, H, W]; u and v are sums of a row term and a column term.
  u_NxHxW = cos_N11 * dx_NxP[:, None, :] + sin_N11 * dy_NxP[:, :, None]
  v_NxHxW = cos_N11 * dy_NxP[:, :, None] - sin_N11 * dx_NxP[:, None, :]
  mask_NxHxW = np.empty(u_NxHxW.shape, bool)
  for shape, inside in enumerate((_square, _ellipse, _heart)):
    rows = factors_NxK[:, 0] == shape
    if rows.all():  # A chunk of the full grid is one shape: no copies.
      rows = slice(None)
    elif not rows.any():
      continue
    s_N11 = scale_N[rows, None, None]
    mask_NxHxW[rows] = inside(u_NxHxW[rows] / s_N11, v_NxHxW[rows] / s_N11)
  return mask_NxHxW


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether the points (u, v) of a shape at scale 1 lie in the square."""
  return (abs(u) <= SQUARE_HALF) & (abs(v) <= SQUARE_HALF)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  return (u / ELLIPSE_AXES[0]) ** 2 + (v / ELLIPSE_AXES[1]) ** 2 <= 1


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  p, q = u / HEART_UNIT, -v / HEART_UNIT
  p2, q2 = p * p, q * q
  r = p2 + q2 - 1
  return r * r * r <= p2 * q2 * q


def check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise UserError(f"--variant={variant!r} is not one of {', '.join(VARIANTS)}")


def colorize(mask_NxHxW: np.ndarray, variant: str, rng: np.random.RandomState) -> np.ndarray:
  """[N, 64, 64, C] uint8 images of the masks in `variant` (module docstring), drawing from rng."""
  check_variant(variant)
  on_NxHxWx1 = mask_NxHxW[..., None]
  if variant == "binary":
    return on_NxHxWx1.astype(np.uint8) * np.uint8(255)
  if variant == "color":
    color_Nx1x1x3 = np.round(255 * rng.uniform(0.5, 1, (len(mask_NxHxW), 1, 1, 3)))
    return (on_NxHxWx1 * color_Nx1x1x3).astype(np.uint8)
  noise_NxHxWx3 = rng.randint(0, 255, (*mask_NxHxW.shape, 3), dtype=np.uint8)  # noisy
  return np.where(on_NxHxWx1, np.uint8(255), noise_NxHxWx3)


@dataclasses.dataclass(frozen=True)
class Grid:
  """All factor combinations of a grid in factor order, as [N, 5] indices and values."""
  sizes: tuple[int, ...]

  @property
  def num_images(self) -> int:
    return int(np.prod(self.sizes))

  def factors(self, start: int, stop: int) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(start, stop), self.sizes), axis=1).astype(np.int32)

  def values(self, factors_NxK: np.ndarray) -> np.ndarray:
    return np.stack([v[factors_NxK[:, k]] for k, v in enumerate(factor_values(self.sizes))],
                    axis=1).astype(np.float32)


def examples(grid: tuple[int, ...], variant: str, seed: int):
  """(index, example) of every image of the grid in factor order, rendered CHUNK at a time."""
  table, rng = Grid(grid), np.random.RandomState(seed)
  for start in range(0, table.num_images, CHUNK):
    factors_NxK = table.factors(start, min(start + CHUNK, table.num_images))
    images = colorize(render(factors_NxK, grid), variant, rng)
    for i, image, factors, values in zip(itertools.count(start), images, factors_NxK,
                                         table.values(factors_NxK)):
      yield i, {"image": image, "factors": factors, "factor_values": values}


def prepare_shapes(data_dir: str, variant: str = "binary", grid: tuple[int, ...] = FULL_GRID,
                   seed: int = 0) -> tuple[str, str]:
  """Renders the grid in `variant` and stores it in `data_dir`; returns (name, directory)."""
  check_variant(variant)
  name = dataset_name(variant, grid)
  target = os.path.join(data_dir, name, VERSION)
  if os.path.exists(target):
    raise UserError(f"{target} already holds a prepared {name!r}; remove that folder to "
                    f"prepare it afresh")
  import tensorflow as tf
  import tensorflow_datasets as tfds
  from tensorflow_datasets import dataset_builders

  channels = 1 if variant == "binary" else 3
  features = tfds.features.FeaturesDict({
      # Raw bytes: TFDS's PNG encoding costs about 8 times as much per image (it goes through
      # TensorFlow), too slow for 737,280 images.
      "image": tfds.features.Tensor(shape=(SIZE, SIZE, channels), dtype=tf.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      "factors": tfds.features.Tensor(shape=(len(FULL_GRID),), dtype=tf.int32),
      "factor_values": tfds.features.Tensor(shape=(len(FULL_GRID),), dtype=tf.float32)})
  logging.info("Rendering %s: %d images of grid %s, variant %s, into %s", name,
               Grid(grid).num_images, grid, variant, data_dir)
  builder = dataset_builders.store_as_tfds_dataset(
      name, VERSION, features, {SPLIT: examples(grid, variant, seed)}, data_dir=data_dir,
      file_format="array_record", disable_shuffling=True,
      description=(f"dSprites-like shapes ({variant}, grid {grid} of {FACTOR_NAMES}, seed "
                   f"{seed}), rendered by aejax.prepare_shapes; see aejax/data/shapes.py."))
  return name, os.fspath(builder.data_dir)
