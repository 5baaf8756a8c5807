"""The analysis figures, as PNG files of fixed pixel size (figure size in inches x DPI).

matplotlib's Agg backend: no display is needed, and pyplot's global state is never touched
(figures are created with `matplotlib.figure.Figure`, so nothing leaks between calls).
"""

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
import numpy as np

from aejax.run import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from aejax.run import storage  # pylint: disable=g-import-not-at-top

DPI = 100
# Name -> figure size in inches; each PNG is (width * DPI) x (height * DPI) pixels.
SIZES = {"reconstructions": (10, 4), "samples": (8, 8), "interpolation": (10, 1.6),
         "codes_2d": (8, 7), "manifold": (8, 8), "curves": (12, 4)}


def _save(fig: Figure, path: str) -> str:
  with storage.atomic(path, "wb") as f:
    fig.savefig(f, format="png", dpi=DPI)  # No bbox_inches="tight": the pixel size is as declared.
  return path


def mosaic(images_NxHxWxC: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """Tiles N <= rows * cols images into one [rows * H, cols * W] array, [.., 3] for RGB images
  (blank cells are 0); images of another channel count show their first channel."""
  n, h, w = images_NxHxWxC.shape[:3]
  images = images_NxHxWxC if images_NxHxWxC.shape[3] == 3 else images_NxHxWxC[..., :1]
  grid = np.zeros((rows * h, cols * w, images.shape[3]), np.float32)
  for i in range(min(n, rows * cols)):
    r, c = divmod(i, cols)
    grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
  return grid if images.shape[3] == 3 else grid[..., 0]


def _image(fig: Figure, grid: np.ndarray, title: str) -> None:
  ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
  ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="antialiased")
  ax.set_title(title)
  ax.axis("off")


def reconstructions(path: str, images: np.ndarray, recons: np.ndarray, cols: int = 16) -> str:
  """Two rows of test images, each above a row of their reconstructions."""
  h, w = images.shape[1:3]
  rows = [mosaic(images[i * cols:(i + 1) * cols], 1, cols) for i in range(2)]
  recs = [mosaic(recons[i * cols:(i + 1) * cols], 1, cols) for i in range(2)]
  grid = np.concatenate([rows[0], recs[0], np.ones((h // 4, *rows[0].shape[1:])), rows[1], recs[1]])
  fig = Figure(figsize=SIZES["reconstructions"])
  _image(fig, grid, "test images (rows 1, 3) and their reconstructions (rows 2, 4)")
  return _save(fig, path)


def samples(path: str, images: np.ndarray, rows: int = 8,
            source: str = "from the prior") -> str:
  fig = Figure(figsize=SIZES["samples"])
  _image(fig, mosaic(images, rows, rows), f"{rows * rows} samples {source} (pixel means)")
  return _save(fig, path)


def interpolation(path: str, images: np.ndarray) -> str:
  """A strip decoded along the line between two test images' codes (ends included)."""
  fig = Figure(figsize=SIZES["interpolation"])
  _image(fig, mosaic(images, 1, len(images)), "latent interpolation between two test images")
  return _save(fig, path)


def codes_2d(path: str, points_Nx2: np.ndarray, labels_N: np.ndarray | None, how: str) -> str:
  """Test codes in 2-D coloured by label (one colour when there are none); `how` says which
  projection (shown in the title)."""
  fig = Figure(figsize=SIZES["codes_2d"])
  ax = fig.add_subplot()
  cmap = matplotlib.colormaps["tab10"]
  if labels_N is None:
    ax.scatter(points_Nx2[:, 0], points_Nx2[:, 1], s=2, color=cmap(0), alpha=0.6,
               rasterized=True)
  else:
    for label in np.unique(labels_N):
      sel = labels_N == label
      ax.scatter(points_Nx2[sel, 0], points_Nx2[sel, 1], s=2, color=cmap(int(label) % 10),
                 label=str(label), alpha=0.6, rasterized=True)
    ax.legend(title="label", markerscale=5, loc="upper right", fontsize="small")
  ax.set_title(f"test codes ({how})")
  fig.tight_layout()
  return _save(fig, path)


def manifold(path: str, images: np.ndarray, n: int, span: float) -> str:
  """Decoded images over an n x n grid of a 2-D latent space (the prior's 5%-95% quantiles per
  dimension: aejax.analysis.restored.prior_quantiles)."""
  fig = Figure(figsize=SIZES["manifold"])
  _image(fig, mosaic(images, n, n), f"decoded latent manifold (z1, z2 at prior quantiles, "
         f"|z| <= {span:.2f})")
  return _save(fig, path)


def curves(path: str, records: list[dict]) -> str:
  """Train and test curves of every metric the two splits share, against the step."""
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  skip = {*metrics_lib.RECORD_FIELDS, "examples_per_sec", "grad_norm"}
  names = [k for k in (train or test or [{}])[0] if k not in skip]
  fig = Figure(figsize=SIZES["curves"])
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names), i + 1)
    for split, rows, marker in (("train", train, "-"), ("test", test, "o-")):
      rows = [r for r in rows if name in r]
      if rows:
        ax.plot([r["step"] for r in rows], [r[name] for r in rows], marker, label=split)
    ax.set_xlabel("step")
    ax.set_title(name)
    ax.legend()
  fig.tight_layout()
  return _save(fig, path)
