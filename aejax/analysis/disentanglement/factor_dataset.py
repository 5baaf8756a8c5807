"""A prepared dataset with ground-truth factors (aejax/data/shapes.py) as the source the
disentanglement metrics sample (aejax/analysis/disentanglement/source.py: `GroundTruth`).

The dataset holds every combination of its factors once, in row-major factor order, with each
image's factor indices in its `factors` feature; so the image of factor indices f is example
`ravel_multi_index(f, sizes)`, and the sizes are one more than the last example's indices.
Observations are the images as the dataset stores them (uint8 [N, H, W, C]), read from the
prepared ArrayRecord files without TensorFlow; the noise of the colour and noisy variants is the
stored one, drawn once per image.
"""

import numpy as np

from aejax.analysis.disentanglement.source import MetricInputError
from aejax.data.shapes import SPLIT


class FactorSource:
  """disentanglement_lib's GroundTruthData over the prepared dataset in `builder_dir`."""

  def __init__(self, builder_dir: str):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(builder_dir)
    if "factors" not in builder.info.features:
      raise MetricInputError(f"{builder.info.name} has no ground-truth factors (no 'factors' "
                             f"feature), so disentanglement cannot be measured on it; prepare a "
                             f"dataset with factors by python -m aejax.prepare_shapes")
    self._source = builder.as_data_source(split=SPLIT)
    last = self._source[len(self._source) - 1]["factors"]
    self._sizes = tuple(int(i) + 1 for i in last)
    if int(np.prod(self._sizes)) != len(self._source):
      raise MetricInputError(f"{builder_dir} holds {len(self._source)} examples, not the "
                             f"{int(np.prod(self._sizes))} of its factor grid {self._sizes}; "
                             f"prepare it afresh")

  @property
  def factors_num_values(self) -> tuple[int, ...]:
    return self._sizes

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """[num, factors] indices, each factor drawn uniformly (disentanglement_lib's
    SplitDiscreteStateSpace: one randint per factor, in factor order)."""
    return np.stack([random_state.randint(size, size=num) for size in self._sizes], axis=1)

  def index_of(self, factors_NxK: np.ndarray) -> np.ndarray:
    """[N] the examples holding the given factor indices."""
    return np.ravel_multi_index(tuple(np.asarray(factors_NxK).T), self._sizes)

  def images(self, index_N: np.ndarray) -> np.ndarray:
    """[N, H, W, C] uint8 stored images of the given examples."""
    return np.stack([ex["image"] for ex in self._source.__getitems__(np.asarray(index_N).tolist())])

  def sample_observations_from_factors(self, factors_NxK: np.ndarray,
                                       random_state: np.random.RandomState) -> np.ndarray:
    """[N, H, W, C] uint8 stored images of the given factor indices (random_state unused: the
    dataset's noise was drawn when it was prepared)."""
    del random_state
    return self.images(self.index_of(factors_NxK))


class IndexedFactors:
  """A FactorSource whose observations are the examples' indices (int64 [N]), for a
  representation that looks codes up (`CachedCodes`); the same draws as the source's."""

  def __init__(self, source: FactorSource):
    self.source = source

  @property
  def factors_num_values(self) -> tuple[int, ...]:
    return self.source.factors_num_values

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    return self.source.sample_factors(num, random_state)

  def sample_observations_from_factors(self, factors_NxK: np.ndarray,
                                       random_state: np.random.RandomState) -> np.ndarray:
    del random_state
    return self.source.index_of(factors_NxK)


class CachedCodes:
  """index [N] -> codes [N, D] of a FactorSource's examples, each image read and encoded once.
  The metrics at the reference's sizes draw about 2.9 million points, with repeats once the grid
  is smaller than that (the small grid's 46,080 images, or the full grid's 737,280), and a stored
  image's code does not change: so each is computed once, and the scores are those of the images
  drawn. `eager`: the first call encodes every example, in index order, CHUNK images per call of
  `representation_fn` (the metrics draw batches of 16 to 128 points, and a call per batch of new
  images costs more than the encoding); otherwise the images are encoded when first drawn.
  `encoded` counts the images encoded."""

  CHUNK = 8192  # 32 MB of 64 x 64 x 1 uint8 images (96 MB in colour) read at a time.

  def __init__(self, source: FactorSource, representation_fn, eager: bool = False):
    self.source, self.representation_fn, self.eager = source, representation_fn, eager
    self._codes = None
    self._known = np.zeros(int(np.prod(source.factors_num_values)), bool)
    self.encoded = 0

  def __call__(self, index_N: np.ndarray) -> np.ndarray:
    if self.eager and not self.encoded:
      for start in range(0, len(self._known), self.CHUNK):
        self._encode(np.arange(start, min(start + self.CHUNK, len(self._known))))
    missing = np.unique(index_N[~self._known[index_N]])
    if missing.size:
      self._encode(missing)
    return self._codes[index_N]

  def _encode(self, index_M: np.ndarray) -> None:
    codes = np.asarray(self.representation_fn(self.source.images(index_M)))
    if self._codes is None:
      self._codes = np.zeros((len(self._known), *codes.shape[1:]), codes.dtype)
    self._codes[index_M] = codes
    self._known[index_M] = True
    self.encoded += index_M.size
