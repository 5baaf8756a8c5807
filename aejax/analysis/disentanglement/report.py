"""The disentanglement metrics as aejax reports them: of a restored run (aejax.analyze
--disentanglement) and of the two reference codes a table shows first
(aejax.disentanglement_reference): the ground-truth factors themselves and pure noise.

A run's representation is its encoder means (model.code: a VAE's posterior mean, an AE's code) of
the prepared dataset's stored images, preprocessed as in training; the source is that dataset
(factor_dataset.FactorSource). all_metrics' scores are stored under the flat names of NAMES, which
aejax.compare reads as analysis.metrics.<name>.
"""

import copy
import inspect
import time

from absl import flags
from absl import logging
import numpy as np

from aejax.analysis import disentanglement
from aejax.analysis.disentanglement import factor_dataset
from aejax.errors import UserError

SCALE = flags.DEFINE_float(
    "disentanglement_scale", 1.0, "Fraction of the reference's sample sizes (10000 train and "
    "5000 test points, 10000 for FactorVAE's variances) each disentanglement metric draws, "
    "0.01 to 1; below 1 for a quick look (the numbers are then not the reference's). Batch "
    "sizes and histogram bins stay the reference's.")

# At 0.01 a metric draws 100 training and 50 test points: beta-VAE's classifier still sees each
# of 5 factors held fixed (a missing one is a chance of about 5 x 0.8^50 = 7e-5).
MIN_SCALE = 0.01
# Images encoded when first drawn come in batches of at most 64 new ones (beta-VAE's and
# FactorVAE's); analyze's padded batches of 500 would encode 8 times as many.
ENCODE_BATCH = 64
NOISE_STREAM = 1  # The noise code's generator: PCG64 of (seed, this), apart from the metrics'.

# all_metrics' "metric/score" -> the flat name in analysis/metrics.json.
NAMES = {
    "beta_vae/eval_accuracy": "beta_vae_accuracy",
    "beta_vae/train_accuracy": "beta_vae_train_accuracy",
    "factor_vae/eval_accuracy": "factor_vae_accuracy",
    "factor_vae/train_accuracy": "factor_vae_train_accuracy",
    "factor_vae/num_active_dims": "factor_vae_active_dims",
    "mig/discrete_mig": "mig",
    "dci/disentanglement": "dci_disentanglement",
    "dci/completeness": "dci_completeness",
    "dci/informativeness_test": "dci_informativeness",
    "dci/informativeness_train": "dci_informativeness_train",
    "sap/SAP_score": "sap",
    "modularity_explicitness/modularity_score": "modularity",
    "modularity_explicitness/explicitness_score_test": "explicitness",
    "modularity_explicitness/explicitness_score_train": "explicitness_train",
}
TEXT = {
    "beta_vae_accuracy": "beta-VAE score: held-out accuracy naming the factor fixed in a batch",
    "beta_vae_train_accuracy": "beta-VAE score: its classifier's training accuracy",
    "factor_vae_accuracy": "FactorVAE score: held-out majority-vote accuracy",
    "factor_vae_train_accuracy": "FactorVAE score: its votes' training accuracy",
    "factor_vae_active_dims": "code dimensions with standard deviation >= 0.05 (FactorVAE's)",
    "mig": "mutual information gap over factor entropy, mean over factors",
    "dci_disentanglement": "DCI disentanglement (gradient-boosted trees' importances)",
    "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness: the trees' test accuracy, mean over factors",
    "dci_informativeness_train": "DCI informativeness: the trees' training accuracy",
    "sap": "SAP score: gap of the two most predictive dimensions' accuracies",
    "modularity": "modularity (Ridgeway & Mozer) from binned mutual information",
    "explicitness": "explicitness: a logistic regression's test ROC-AUC, mean over factors",
    "explicitness_train": "explicitness on the training points",
}
REFERENCES = ("factors as code", "noise")


def check_scale(scale: float, enabled: bool = True) -> None:
  """A one-line UserError unless `scale` is a size flag that takes effect."""
  if not MIN_SCALE <= scale <= 1:
    raise UserError(f"--disentanglement_scale={scale:g} must be from {MIN_SCALE:g} to 1, the "
                    f"fraction of the reference's sample sizes the metrics draw")
  if not enabled and scale != 1:
    raise UserError(f"--disentanglement_scale={scale:g} has no effect without "
                    f"--disentanglement; add --disentanglement or drop it")


def sizes(scale: float = 1.0) -> dict[str, dict[str, int]]:
  """Each metric's sample sizes: its num_* defaults (the reference's; bins aside) x scale."""
  return {name: {p.name: max(1, round(p.default * scale))
                 for p in inspect.signature(fn).parameters.values()
                 if p.name.startswith("num_") and p.name != "num_bins"}
          for name, fn in disentanglement.METRICS.items()}


def measure(source, representation_fn, seed: int, scale: float) -> dict[str, float]:
  """all_metrics at the scaled sizes under the flat names of NAMES."""
  scores = disentanglement.all_metrics(source, representation_fn, seed, sizes(scale))
  return {NAMES[key]: value for key, value in scores.items()}


def encodes_whole_grid(grid_size: int, scale: float) -> bool:
  """Whether a run's metrics encode the whole grid up front (CachedCodes' eager mode): when it
  holds no more images than the beta-VAE score alone draws (2 x batch x its train and eval
  points), since the metrics then draw nearly every image anyway."""
  beta_vae = sizes(scale)["beta_vae"]
  batch = inspect.signature(disentanglement.beta_vae_score).parameters["batch_size"].default
  return grid_size <= 2 * batch * (beta_vae["num_train"] + beta_vae["num_eval"])


def run_scores(run, source, seed: int, scale: float) -> dict[str, float]:
  """The metrics of a restored run's encoder means (aejax.analysis.restored.Restored)."""
  eager = encodes_whole_grid(int(np.prod(source.factors_num_values)), scale)
  coder = run
  if not eager:  # The same compiled functions, in the metrics' batch size.
    coder = copy.copy(run)
    coder.batch_size = ENCODE_BATCH
  start = time.perf_counter()
  codes = factor_dataset.CachedCodes(
      source, lambda images: coder.encode(coder.model_inputs(images, seed)), eager)
  scores = measure(factor_dataset.IndexedFactors(source), codes, seed, scale)
  logging.info("Disentanglement metrics at %g x the reference's sizes: %.1f s, %d images "
               "encoded%s", scale, time.perf_counter() - start, codes.encoded,
               " (the whole grid, up front)" if eager else " (when first drawn)")
  return scores


RUN_CODE = ("the encoder means (model.code) of the dataset's stored images preprocessed as in "
            "training")


def protocol(seed: int | str, scale: float, code: str = RUN_CODE) -> str:
  """How the metrics of `code` were measured, with the sizes and the seed."""
  drawn = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in kwargs.items())
                    for name, kwargs in sizes(scale).items())
  return (f"disentanglement_lib's metrics (aejax/analysis/disentanglement/) of {code}, factors "
          f"drawn uniformly from the prepared dataset's grid, each metric from its own "
          f"RandomState({seed}) (--seed); sample sizes {scale:g} x the reference's ({drawn}); "
          f"batch sizes and 20-bin histograms the reference's")


class _FactorsObserved:
  """The source with each observation its factor indices, for codes made from the factors."""

  def __init__(self, source):
    self._source = source
    self.factors_num_values = tuple(source.factors_num_values)

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    return self._source.sample_factors(num, random_state)

  def sample_observations_from_factors(self, factors_NxK: np.ndarray,
                                       random_state: np.random.RandomState) -> np.ndarray:
    del random_state
    return np.asarray(factors_NxK)


def reference_scores(source, seed: int, scale: float,
                     latents: int) -> dict[str, dict[str, float]]:
  """{reference: metrics}: the code "factors as code" is each factor's index / (values - 1);
  "noise" is `latents` standard normals per observation, independent of it."""
  observed = _FactorsObserved(source)
  last_K = np.array(observed.factors_num_values, np.float64) - 1
  noise = np.random.default_rng((seed, NOISE_STREAM))
  codes = {"factors as code": lambda f_NxK: f_NxK / last_K,
           "noise": lambda f_NxK: noise.standard_normal((len(f_NxK), latents))}
  return {name: measure(observed, codes[name], seed, scale) for name in REFERENCES}
