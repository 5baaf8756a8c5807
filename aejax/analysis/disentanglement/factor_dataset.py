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

  def sample_observations_from_factors(self, factors_NxK: np.ndarray,
                                       random_state: np.random.RandomState) -> np.ndarray:
    """[N, H, W, C] uint8 stored images of the given factor indices (random_state unused: the
    dataset's noise was drawn when it was prepared)."""
    del random_state
    examples = self._source.__getitems__(self.index_of(factors_NxK).tolist())
    return np.stack([ex["image"] for ex in examples])
