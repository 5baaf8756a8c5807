"""The ground-truth source every disentanglement metric samples, and what the metrics share.

A source is disentanglement_lib's `GroundTruthData`
(disentanglement_lib/data/ground_truth/ground_truth_data.py): it samples factor indices and gives
the observations of given factors. A representation function maps a batch of observations to
codes (a model's encoder means). All draws come from one `numpy.random.RandomState`, so a seed
fixes a metric's value. Arrays are [points, dims] here, where the reference keeps them transposed.
"""

from typing import Callable, Protocol, Sequence

import numpy as np
import sklearn.metrics

from aejax.errors import UserError

RepresentationFn = Callable[[np.ndarray], np.ndarray]


class MetricInputError(UserError, ValueError):
  """A metric asked of data or sizes it cannot measure; the message names the fix."""


class GroundTruth(Protocol):
  """disentanglement_lib's GroundTruthData: factor indices in, observations out."""

  @property
  def factors_num_values(self) -> Sequence[int]:
    """How many values each factor takes; factor k's indices are 0 .. values[k] - 1."""

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """[num, factors] integer factor indices, drawn from random_state."""

  def sample_observations_from_factors(self, factors_NxK: np.ndarray,
                                       random_state: np.random.RandomState) -> np.ndarray:
    """[num, ...] observations of the given factors (random_state for any noise they carry)."""


def random_state_of(seed: int | np.random.RandomState) -> np.random.RandomState:
  """The RandomState a metric draws from: a given one, or a fresh one from an integer seed."""
  if isinstance(seed, np.random.RandomState):
    return seed
  if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
    return np.random.RandomState(int(seed))
  raise MetricInputError(f"random_state={seed!r} is neither an integer seed nor a "
                         "numpy.random.RandomState; pass one of them (the reference's draws need "
                         "RandomState's randint, which numpy.random.Generator lacks)")


def check_source(source) -> tuple[int, ...]:
  """The source's factor sizes, or a one-line error when it has no usable factors."""
  missing = [name for name in ("factors_num_values", "sample_factors",
                               "sample_observations_from_factors") if not hasattr(source, name)]
  if missing:
    raise MetricInputError(f"{type(source).__name__} has no {', '.join(missing)}: it holds no "
                           "ground-truth factors, so disentanglement cannot be measured on it; "
                           "use a dataset with factors of variation")
  sizes = tuple(int(v) for v in source.factors_num_values)
  if not sizes:
    raise MetricInputError(f"{type(source).__name__} has no ground-truth factors, so "
                           "disentanglement cannot be measured on it; use a dataset with factors "
                           "of variation")
  single = [k for k, v in enumerate(sizes) if v < 2]
  if single:
    raise MetricInputError(f"factors {single} take fewer than 2 values {sizes}, so they carry no "
                           "information to score; leave constant factors out of the source")
  return sizes


def check_sizes(**sizes: int) -> None:
  """Each named sample size is a positive integer (2 at least for a sample variance's)."""
  for name, value in sizes.items():
    least = 2 if name in ("batch_size", "num_variance_estimate") else 1
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
      raise MetricInputError(f"{name}={value!r} must be an integer >= {least}; pass a larger "
                             "sample size (the reference's are the defaults)")


def sample_factors(source, num: int, random_state: np.random.RandomState,
                   sizes: tuple[int, ...]) -> np.ndarray:
  """[num, factors] factor indices from the source, checked against its factor sizes."""
  factors_NxK = np.asarray(source.sample_factors(num, random_state))
  if factors_NxK.shape != (num, len(sizes)):
    raise MetricInputError(f"sample_factors({num}) gave shape {factors_NxK.shape}, not "
                           f"({num}, {len(sizes)}); it must return one row of factor indices "
                           "per point")
  if not np.issubdtype(factors_NxK.dtype, np.integer):
    raise MetricInputError(f"sample_factors gave {factors_NxK.dtype} values; it must return "
                           "integer factor indices, not factor values")
  if (factors_NxK < 0).any() or (factors_NxK >= np.array(sizes)).any():
    raise MetricInputError(f"sample_factors gave indices outside 0 .. values - 1 for factor "
                           f"sizes {sizes}; return indices, not values")
  return factors_NxK


def codes_of(representation_fn: RepresentationFn, observations: np.ndarray) -> np.ndarray:
  """[num, code dims] float64 codes of a batch, checked: one finite row per observation."""
  num = len(observations)
  codes_NxD = np.asarray(representation_fn(observations), np.float64)
  if codes_NxD.ndim != 2 or codes_NxD.shape[0] != num:
    raise MetricInputError(f"representation_fn gave codes of shape {codes_NxD.shape} for {num} "
                           "observations; it must return [observations, code dims]")
  if not np.isfinite(codes_NxD).all():
    raise MetricInputError("representation_fn gave non-finite codes; check the model's "
                           "encoder means before scoring them")
  return codes_NxD


def sample_codes_and_factors(source, representation_fn: RepresentationFn, num_points: int,
                             random_state: np.random.RandomState, batch_size: int,
                             sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  """(codes [N, D], factors [N, K]) of num_points random points, drawn batch by batch.

  disentanglement_lib/evaluation/metrics/utils.py: generate_batch_factor_code (the last batch
  is smaller where batch_size does not divide num_points).
  """
  codes, factors = [], []
  for start in range(0, num_points, batch_size):
    factors_BxK = sample_factors(source, min(batch_size, num_points - start), random_state, sizes)
    observations = source.sample_observations_from_factors(factors_BxK, random_state)
    codes.append(codes_of(representation_fn, observations))
    factors.append(factors_BxK)
  return np.concatenate(codes), np.concatenate(factors)


def histogram_discretize(codes_NxD: np.ndarray, num_bins: int = 20) -> np.ndarray:
  """[N, D] bin indices 1 .. num_bins of each code dimension's equal-width histogram.

  disentanglement_lib/evaluation/metrics/utils.py: _histogram_discretize (num_bins = 20 in the
  study's mig.gin and modularity_explicitness.gin).
  """
  check_sizes(num_bins=num_bins)
  binned = np.zeros(codes_NxD.shape, np.int64)
  for d in range(codes_NxD.shape[1]):
    edges = np.histogram(codes_NxD[:, d], num_bins)[1]
    binned[:, d] = np.digitize(codes_NxD[:, d], edges[:-1])
  return binned


def discrete_mutual_info(binned_NxD: np.ndarray, factors_NxK: np.ndarray) -> np.ndarray:
  """[D, K] mutual information (nats) of each binned code dimension with each factor.

  disentanglement_lib/evaluation/metrics/utils.py: discrete_mutual_info.
  """
  return np.array([[sklearn.metrics.mutual_info_score(factors_NxK[:, k], binned_NxD[:, d])
                    for k in range(factors_NxK.shape[1])] for d in range(binned_NxD.shape[1])])


def discrete_entropy(factors_NxK: np.ndarray) -> np.ndarray:
  """[K] entropy (nats) of each factor's sample: disentanglement_lib's utils.discrete_entropy."""
  return np.array([sklearn.metrics.mutual_info_score(factors_NxK[:, k], factors_NxK[:, k])
                   for k in range(factors_NxK.shape[1])])


def check_codes_and_factors(codes_NxD: np.ndarray, factors_NxK: np.ndarray) -> None:
  """Codes and factors of the same points, each factor with at least two values in the sample."""
  if codes_NxD.ndim != 2 or factors_NxK.ndim != 2 or len(codes_NxD) != len(factors_NxK):
    raise MetricInputError(f"codes {codes_NxD.shape} and factors {factors_NxK.shape} must be "
                           "[points, dims] arrays of the same points")
  constant = [k for k in range(factors_NxK.shape[1]) if len(np.unique(factors_NxK[:, k])) < 2]
  if constant:
    raise MetricInputError(f"factors {constant} take a single value in this sample of "
                           f"{len(factors_NxK)} points; draw more points")
