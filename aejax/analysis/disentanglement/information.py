"""Scores from the mutual information of binned codes with factors: MIG and modularity, with
explicitness (a per-factor classifier's ROC-AUC) computed beside modularity as in the reference.

Defaults are disentanglement_lib's unsupervised study (config/unsupervised_study_v1/
metric_configs/mig.gin, modularity_explicitness.gin): 20-bin histograms, 10000 training points.
"""

import numpy as np
from sklearn import linear_model
from sklearn import metrics

from aejax.analysis.disentanglement import source as source_lib


def mig(source, representation_fn, random_state, num_train: int = 10000, batch_size: int = 16,
        num_bins: int = 20) -> dict[str, float]:
  """Chen et al. 2018: the mutual information gap, averaged over factors.

  disentanglement_lib/evaluation/metrics/mig.py: compute_mig.
  """
  sizes = source_lib.check_source(source)
  source_lib.check_sizes(num_train=num_train, batch_size=batch_size)
  codes_NxD, factors_NxK = source_lib.sample_codes_and_factors(
      source, representation_fn, num_train, source_lib.random_state_of(random_state),
      batch_size, sizes)
  return mig_of_codes(codes_NxD, factors_NxK, num_bins)


def mig_of_codes(codes_NxD: np.ndarray, factors_NxK: np.ndarray,
                 num_bins: int = 20) -> dict[str, float]:
  """MIG of given codes: mig.py's _compute_mig.

  Per factor, the gap between the two largest mutual informations with a binned code dimension,
  over the factor's entropy; the mean over factors. A code of one dimension has no second
  largest, so its gap is measured against 0.
  """
  source_lib.check_codes_and_factors(codes_NxD, factors_NxK)
  mi_DxK = source_lib.discrete_mutual_info(
      source_lib.histogram_discretize(codes_NxD, num_bins), factors_NxK)
  entropy_K = source_lib.discrete_entropy(factors_NxK)
  sorted_DxK = np.sort(np.vstack([mi_DxK, np.zeros_like(mi_DxK[:1])]), axis=0)[::-1]
  return {"discrete_mig": float(np.mean((sorted_DxK[0] - sorted_DxK[1]) / entropy_K))}


def modularity_explicitness(source, representation_fn, random_state, num_train: int = 10000,
                            num_test: int = 5000, batch_size: int = 16,
                            num_bins: int = 20) -> dict[str, float]:
  """Ridgeway & Mozer 2018: modularity from mutual information, explicitness as ROC-AUC.

  disentanglement_lib/evaluation/metrics/modularity_explicitness.py:
  compute_modularity_explicitness.
  """
  sizes = source_lib.check_source(source)
  source_lib.check_sizes(num_train=num_train, num_test=num_test, batch_size=batch_size)
  random_state = source_lib.random_state_of(random_state)
  train_NxD, train_factors_NxK = source_lib.sample_codes_and_factors(
      source, representation_fn, num_train, random_state, batch_size, sizes)
  test_MxD, test_factors_MxK = source_lib.sample_codes_and_factors(
      source, representation_fn, num_test, random_state, batch_size, sizes)
  return modularity_explicitness_of_codes(train_NxD, train_factors_NxK, test_MxD,
                                          test_factors_MxK, num_bins)


def modularity_explicitness_of_codes(train_NxD, train_factors_NxK, test_MxD, test_factors_MxK,
                                     num_bins: int = 20) -> dict[str, float]:
  """Modularity and explicitness of given codes (the body of compute_modularity_explicitness)."""
  source_lib.check_codes_and_factors(train_NxD, train_factors_NxK)
  source_lib.check_codes_and_factors(test_MxD, test_factors_MxK)
  mi_DxK = source_lib.discrete_mutual_info(
      source_lib.histogram_discretize(train_NxD, num_bins), train_factors_NxK)
  mean_D, std_D = train_NxD.mean(axis=0), train_NxD.std(axis=0)
  # A constant dimension stays 0 instead of becoming 0/0 (the reference's NaN).
  std_D = np.where(std_D > 0, std_D, 1.0)
  train_NxD, test_MxD = (train_NxD - mean_D) / std_D, (test_MxD - mean_D) / std_D
  aucs = np.array([_explicitness_per_factor(train_NxD, train_factors_NxK[:, k], test_MxD,
                                            test_factors_MxK[:, k])
                   for k in range(train_factors_NxK.shape[1])])
  return {"modularity_score": modularity(mi_DxK),
          "explicitness_score_train": float(aucs[:, 0].mean()),
          "explicitness_score_test": float(aucs[:, 1].mean())}


def modularity(mi_DxK: np.ndarray) -> float:
  """Mean over code dimensions of 1 - (sum of squared MI but the largest) / (largest * (K - 1)).

  modularity_explicitness.py: modularity. A dimension with no information scores 0.
  """
  squared_DxK = np.square(mi_DxK)
  max_D = squared_DxK.max(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    score_D = 1.0 - (squared_DxK.sum(axis=1) - max_D) / (max_D * (squared_DxK.shape[1] - 1.0))
  return float(np.mean(np.where(max_D == 0.0, 0.0, score_D)))


def _explicitness_per_factor(train_NxD, train_y, test_MxD, test_y) -> tuple[float, float]:
  """(train, test) macro ROC-AUC of a LogisticRegression's class probabilities for one factor.

  modularity_explicitness.py: explicitness_per_factor. The one-hot targets are built on the
  classifier's classes (the reference's MultiLabelBinarizer gives the same columns whenever
  every class is in the sample).
  """
  clf = linear_model.LogisticRegression().fit(train_NxD, train_y)
  aucs = []
  for codes, y in ((train_NxD, train_y), (test_MxD, test_y)):
    missing = np.setdiff1d(clf.classes_, y)
    if missing.size:
      raise source_lib.MetricInputError(f"factor values {missing.tolist()} are missing from a "
                                        f"sample of {len(y)} points, so their ROC-AUC is "
                                        "undefined; draw more points (num_train, num_test)")
    onehot = (y[:, None] == clf.classes_[None, :]).astype(np.int64)
    aucs.append(float(metrics.roc_auc_score(onehot, clf.predict_proba(codes))))
  return aucs[0], aucs[1]
