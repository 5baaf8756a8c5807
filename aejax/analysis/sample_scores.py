"""The sample quality of a restored run (`aejax.analyze --sample_quality`), in the dataset's
feature network (feature_net.py), with the metrics of sample_quality.py:

- generated: N images decoded from the family's sampler (samplers.py) against N test images;
- reconstructed: the reconstructions of those N test images against the same N test images;
- the real floor: N train images against the same N test images, what a model that generated
  the data distribution itself would score; kept beside the feature network (one small JSON
  file per split pair, N and seed), computed once.

N = min(--sample_images, the test split, the train split); the N test and the N train images are
seeded random subsets. Images enter the network as uint8 grey levels: a model's pixel means in
[0, 1] rounded to 0..255, the test and train images as stored (never binarised).
"""

import dataclasses
import json
import os
import re
import time

from absl import logging
import numpy as np

from aejax.analysis import feature_net
from aejax.analysis import figures
from aejax.analysis import sample_quality
from aejax.analysis import samplers
from aejax.data import views
from aejax.errors import UserError
from aejax.run import storage

IMAGES = 10_000  # The default N: 10,000 as for FID, at most the test split.
MIN_IMAGES = max(sample_quality.PR_K, sample_quality.DC_K) + 1  # The k-NN radii need k + 1.
FIGURE = "quality_samples"
KEYS = ("fd", "kid", "kid_std", "precision", "recall", "density", "coverage")
RECONSTRUCTED = "rec_"  # Prefix of the reconstructions' metrics.


def check_settings(images: int, components: int) -> None:
  """A UserError for flags no run could satisfy, before any work."""
  if images < MIN_IMAGES:
    raise UserError(f"--sample_images={images} is fewer than k + 1 = {MIN_IMAGES} images, the "
                    f"fewest the k-nearest-neighbour radii of density and coverage (k = "
                    f"{sample_quality.DC_K}) need; pass --sample_images >= {MIN_IMAGES} "
                    f"(default {IMAGES})")
  if components < 0:
    raise UserError(f"--ex_post_components={components} must be >= 0")


def metric_name(key: str, network: str, reconstructed: bool = False) -> str:
  """E.g. 'fd_lenet_mnist', 'rec_precision_lenet_mnist': which number, by which network."""
  return f"{RECONSTRUCTED if reconstructed else ''}{key}_{network}"


TEXT = {"fd": "Fréchet distance", "kid": "KID (mean over subsets)",
        "kid_std": "KID's std over subsets", "precision": "precision (k = 3)",
        "recall": "recall (k = 3)", "density": "density (k = 5)", "coverage": "coverage (k = 5)"}


def describe(name: str, network: str) -> str:
  """What the metric `name` of metrics.json is, or '' when it is none of these."""
  for key, text in TEXT.items():
    if name == metric_name(key, network):
      return f"{text} of generated vs test images in {network}'s features"
    if name == metric_name(key, network, reconstructed=True):
      return f"{text} of reconstructed vs test images in {network}'s features"
  return ""


def feature_network(config, data_dir: str | None, manual_dir: str | None,
                    download: bool) -> feature_net.FeatureNet:
  """The feature network of the run's dataset, in the run's view (built once, then loaded)."""
  return feature_net.for_dataset(config.dataset, data_dir, manual_dir, download,
                                 view=views.from_config(config))


def to_uint8(x_01: np.ndarray) -> np.ndarray:
  return np.round(np.clip(x_01, 0.0, 1.0) * 255).astype(np.uint8)


@dataclasses.dataclass
class Scores:
  metrics: dict[str, float]  # metric_name -> value, generated and reconstructed.
  record: dict  # metrics.json's `sample_quality`: network, N, sampler, floor.
  protocol: str
  figure: str  # The PNG of the first 64 generated images.


def measure(run, net: feature_net.FeatureNet, train_images: np.ndarray, test_images: np.ndarray,
            x_test: np.ndarray, codes_train: np.ndarray, *, images: int = IMAGES,
            components: int = samplers.EX_POST_COMPONENTS, seed: int = 0,
            ex_post: str = "gmm", out_dir: str) -> Scores:
  """The sample quality of `run` (a Restored): uint8 train and test images as stored,
  x_test the test images as the model takes them (binarised as it trained), codes_train the
  codes the ex-post samplers are fitted to; ex_post: how a family without a prior is sampled
  (samplers.EX_POST)."""
  n = min(images, len(test_images), len(train_images))
  if n < MIN_IMAGES:
    raise UserError(f"the sample-quality metrics need at least k + 1 = {MIN_IMAGES} test and "
                    f"train images, and {run.config.dataset} has {len(test_images)} test and "
                    f"{len(train_images)} train images; use a larger split")
  start = time.perf_counter()
  sampler = samplers.for_run(run, codes_train, components, seed, ex_post)
  fitted = time.perf_counter()
  rng = np.random.default_rng(seed)
  test_idx = np.sort(rng.permutation(len(test_images))[:n])
  train_idx = np.sort(rng.permutation(len(train_images))[:n])
  real_NxF = net.features(test_images[test_idx])
  generated = to_uint8(run.decode(sampler.codes(n, seed)))
  reconstructed = to_uint8(run.reconstruct(x_test[test_idx]))
  logging.info("Sample quality in %s: %d generated (%s), reconstructed and real images", net.name,
               n, sampler.kind)
  m = {metric_name(k, net.name): v for k, v in
       sample_quality.sample_quality(real_NxF, net.features(generated), seed).items()}
  m.update({metric_name(k, net.name, reconstructed=True): v for k, v in
            sample_quality.sample_quality(real_NxF, net.features(reconstructed), seed).items()})
  floor = real_floor(net, run.config, train_images[train_idx], real_NxF, seed)
  # Apart: an ex-post mixture's fit grows with the code's size (minutes for a 256-unit code).
  logging.info("Sample quality of %d images measured in %.1f s, after %.1f s fitting the %s "
               "sampler", n, time.perf_counter() - fitted, fitted - start, sampler.kind)
  path = os.path.join(out_dir, f"{FIGURE}.png")
  figures.samples(path, generated[:64] / 255.0, source=f"that the {net.name} metrics scored")
  record = {"network": net.name, "network_fingerprint": net.record["fingerprint"],
            "network_test_accuracy": net.record["test_accuracy"],
            "network_embedding": net.record["embedding"], "images": n, "sampler": sampler.kind,
            "floor": floor}
  return Scores(m, record, protocol(net, n, sampler.protocol, floor), f"{FIGURE}.png")


def real_floor(net: feature_net.FeatureNet, config, train_images: np.ndarray,
               real_NxF: np.ndarray, seed: int) -> dict[str, float]:
  """The metrics of the train images against the test images, named as the generated ones;
  read from beside the network where an earlier analysis stored them."""
  splits = "_".join(re.sub(r"[^A-Za-z0-9]+", "-", config.input.get(f"{s}_split", s))
                    for s in ("train", "test"))
  path = os.path.join(net.directory, f"floor_{splits}_n{len(real_NxF)}_seed{seed}.json")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    pass  # Not computed yet, or cut off: computed (again) below.
  floor = {metric_name(k, net.name): v for k, v in sample_quality.sample_quality(
      real_NxF, net.features(train_images), seed).items()}
  with storage.atomic(path) as f:
    json.dump(floor, f, indent=1, sort_keys=True)
  return floor


def protocol(net: feature_net.FeatureNet, n: int, sampler_text: str,
             floor: dict[str, float]) -> str:
  accuracy = net.record["test_accuracy"]
  trained = (f"a classifier trained on the train split's labels, test accuracy "
             f"{accuracy:.2%}" if accuracy is not None else net.record["embedding"])
  shown = ", ".join(f"{k[:-len(net.name) - 1]} {v:.4g}" for k, v in floor.items())
  return (f"*_{net.name}: {n} generated images ({sampler_text}) against {n} test images (a "
          f"seeded subset, as stored), in the 128 penultimate features of {net.name} ({trained}; "
          f"not Inception features: comparable only with numbers from the same network); "
          f"rec_*: the reconstructions of those test images against them; Fréchet distance, KID "
          f"(unbiased MMD^2, kernel (x.y/128 + 1)^3, mean and std over "
          f"{sample_quality.KID_SUBSETS} subsets of {min(n, sample_quality.KID_MAX_SUBSET)}), "
          f"precision and recall (k = {sample_quality.PR_K}), density and coverage (k = "
          f"{sample_quality.DC_K}); the real floor, {n} train images against the same test "
          f"images: {shown}")
