"""How the sample-quality metrics move as images get worse: the first 5,000 MNIST test images as
the real set, the other 5,000 with growing Gaussian noise or blur as the generated set, in the
dataset's feature network (built first if it is not stored yet). Prints the markdown table of
docs/analysis.md.

  python bench/sample_quality_corruption.py --data_dir=... [--manual_dir=...]
"""

from absl import app
from absl import flags
import numpy as np
import scipy.ndimage

from aejax import configs
from aejax.analysis import feature_net
from aejax.analysis import restored
from aejax.analysis import sample_quality
from aejax.data import dataset

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir MNIST is prepared in.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "MNIST's archives, if not prepared yet.")


def noisy(images_uint8: np.ndarray, std: float) -> np.ndarray:
  x = images_uint8 / 255.0 + np.random.default_rng(0).normal(size=images_uint8.shape) * std
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def blurred(images_uint8: np.ndarray, sigma: float) -> np.ndarray:
  x = scipy.ndimage.gaussian_filter(images_uint8.astype(np.float64), (0, sigma, sigma, 0))
  return np.round(x).clip(0, 255).astype(np.uint8)


def main(argv):
  del argv
  net = feature_net.for_dataset("mnist", _DATA_DIR.value, _MANUAL_DIR.value)
  builder_dir = dataset.prepare("mnist", _DATA_DIR.value, _MANUAL_DIR.value, download=False)
  test_images, _ = restored.load_split(configs.base(), builder_dir, "test")
  real, other = test_images[:5000], test_images[5000:]
  real_NxF = net.features(real)
  print(f"{net.name}, test accuracy {net.record['test_accuracy']:.2%}\n")
  print("| generated set | FD | KID | precision | recall |\n|---|---|---|---|---|")
  rows = [("the other test images", other)]
  rows += [(f"+ Gaussian noise, std {s}", noisy(other, s)) for s in (0.1, 0.2, 0.4)]
  rows += [(f"blurred, sigma {s} px", blurred(other, s)) for s in (0.5, 1, 2)]
  for name, images in rows:
    m = sample_quality.sample_quality(real_NxF, net.features(images), seed=0)
    print(f"| {name} | {m['fd']:.4g} | {m['kid']:.4g} | {m['precision']:.3f} | "
          f"{m['recall']:.3g} |")


if __name__ == "__main__":
  app.run(main)
