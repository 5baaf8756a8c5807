"""Scores from predictors of each factor: DCI (gradient-boosted trees) and SAP (per-dimension).

Defaults are disentanglement_lib's unsupervised study (config/unsupervised_study_v1/
metric_configs/dci.gin, sap_score.gin): 10000 training and 5000 test points, discrete factors.
"""

import os

import joblib
import numpy as np
import scipy.stats
from sklearn import ensemble
from sklearn import svm

from aejax.analysis.disentanglement import source as source_lib


def _train_and_test(source, representation_fn, random_state, num_train, num_test, batch_size):
  """(train codes, train factors, test codes, test factors, random_state) drawn in that order."""
  sizes = source_lib.check_source(source)
  source_lib.check_sizes(num_train=num_train, num_test=num_test, batch_size=batch_size)
  random_state = source_lib.random_state_of(random_state)
  train = source_lib.sample_codes_and_factors(source, representation_fn, num_train,
                                              random_state, batch_size, sizes)
  test = source_lib.sample_codes_and_factors(source, representation_fn, num_test, random_state,
                                             batch_size, sizes)
  return (*train, *test, random_state)


def dci(source, representation_fn, random_state, num_train: int = 10000, num_test: int = 5000,
        batch_size: int = 16) -> dict[str, float]:
  """Eastwood & Williams 2018: disentanglement, completeness and informativeness.

  disentanglement_lib/evaluation/metrics/dci.py: compute_dci.
  """
  return dci_of_codes(*_train_and_test(source, representation_fn, random_state, num_train,
                                       num_test, batch_size))


def dci_of_codes(train_NxD, train_factors_NxK, test_MxD, test_factors_MxK,
                 random_state) -> dict[str, float]:
  """DCI of given codes: dci.py's _compute_dci.

  One GradientBoostingClassifier (scikit-learn's defaults, as the reference) per factor; its
  feature importances are a column of the [D, K] importance matrix, its accuracies the
  informativeness. The reference leaves the trees unseeded; here factor k's trees are seeded with
  the k-th integer drawn from random_state after the samples, so a seed fixes the score. The
  factors' classifiers are independent, so they are fitted in parallel threads (scikit-learn
  builds trees without the GIL): the trees of 40 orientations and 32 positions are nearly all of
  the metrics' time.
  """
  source_lib.check_codes_and_factors(train_NxD, train_factors_NxK)
  source_lib.check_codes_and_factors(test_MxD, test_factors_MxK)
  random_state = source_lib.random_state_of(random_state)
  num_factors = train_factors_NxK.shape[1]
  seeds = random_state.randint(np.iinfo(np.int32).max, size=num_factors)

  def fit(k):
    model = ensemble.GradientBoostingClassifier(random_state=seeds[k])
    model.fit(train_NxD, train_factors_NxK[:, k])
    return (np.abs(model.feature_importances_),
            np.mean(model.predict(train_NxD) == train_factors_NxK[:, k]),
            np.mean(model.predict(test_MxD) == test_factors_MxK[:, k]))

  # The largest fits first, so the last to start is a small one.
  order = sorted(range(num_factors), key=lambda k: -len(np.unique(train_factors_NxK[:, k])))
  jobs = min(num_factors, os.cpu_count() or 1)
  fitted = dict(zip(order, joblib.Parallel(n_jobs=jobs, prefer="threads")(
      joblib.delayed(fit)(k) for k in order)))
  importance_DxK = np.stack([fitted[k][0] for k in range(num_factors)], axis=1)
  train_accuracy = np.array([fitted[k][1] for k in range(num_factors)])
  test_accuracy = np.array([fitted[k][2] for k in range(num_factors)])
  return {"informativeness_train": float(train_accuracy.mean()),
          "informativeness_test": float(test_accuracy.mean()),
          "disentanglement": disentanglement(importance_DxK),
          "completeness": completeness(importance_DxK)}


def disentanglement(importance_DxK: np.ndarray) -> float:
  """Sum over codes of (1 - entropy base K of the code's importances) x its share of importance.

  dci.py: disentanglement (and disentanglement_per_code).
  """
  return _weighted_one_minus_entropy(importance_DxK)


def completeness(importance_DxK: np.ndarray) -> float:
  """Sum over factors of (1 - entropy base D of the factor's importances) x its share.

  dci.py: completeness (and completeness_per_factor).
  """
  return _weighted_one_minus_entropy(importance_DxK.T)


def _weighted_one_minus_entropy(importance_RxC: np.ndarray) -> float:
  """Rows' 1 - entropy (base C, 1e-11 added as the reference) weighted by their share."""
  per_row = 1.0 - scipy.stats.entropy(importance_RxC.T + 1e-11, base=importance_RxC.shape[1])
  if importance_RxC.sum() == 0.0:
    importance_RxC = np.ones_like(importance_RxC)
  return float(np.sum(per_row * importance_RxC.sum(axis=1) / importance_RxC.sum()))


def sap(source, representation_fn, random_state, num_train: int = 10000, num_test: int = 5000,
        batch_size: int = 16, continuous_factors: bool = False) -> dict[str, float]:
  """Kumar et al. 2018: the separated attribute predictability score.

  disentanglement_lib/evaluation/metrics/sap_score.py: compute_sap (continuous_factors=False
  in the study's sap_score.gin).
  """
  return sap_of_codes(*_train_and_test(source, representation_fn, random_state, num_train,
                                       num_test, batch_size), continuous_factors)


def sap_of_codes(train_NxD, train_factors_NxK, test_MxD, test_factors_MxK, random_state,
                 continuous_factors: bool = False) -> dict[str, float]:
  """SAP of given codes: sap_score.py's _compute_sap, the mean gap of the top two scores.

  A factor's score for a code dimension is, for discrete factors, the test accuracy of a
  LinearSVC(C=0.01, class_weight="balanced") on that one dimension (dual=True, the solver of
  the reference's scikit-learn; seeded from random_state here, unseeded there); for continuous
  ones, the squared correlation on the training points (0 for a dimension of variance <= 1e-12).
  """
  source_lib.check_codes_and_factors(train_NxD, train_factors_NxK)
  source_lib.check_codes_and_factors(test_MxD, test_factors_MxK)
  random_state = source_lib.random_state_of(random_state)
  num_codes, num_factors = train_NxD.shape[1], train_factors_NxK.shape[1]
  if num_codes < 2:
    raise source_lib.MetricInputError("SAP compares the two best code dimensions of each "
                                      "factor; it needs a code of at least 2 dimensions")
  score_DxK = np.zeros((num_codes, num_factors))
  for d in range(num_codes):
    for k in range(num_factors):
      if continuous_factors:
        cov_2x2 = np.cov(train_NxD[:, d], train_factors_NxK[:, k], ddof=1)
        if cov_2x2[0, 0] > 1e-12:
          score_DxK[d, k] = cov_2x2[0, 1]**2 / (cov_2x2[0, 0] * cov_2x2[1, 1])
      else:
        classifier = svm.LinearSVC(C=0.01, class_weight="balanced", dual=True,
                                   random_state=random_state)
        classifier.fit(train_NxD[:, d:d + 1], train_factors_NxK[:, k])
        predicted = classifier.predict(test_MxD[:, d:d + 1])
        score_DxK[d, k] = np.mean(predicted == test_factors_MxK[:, k])
  sorted_DxK = np.sort(score_DxK, axis=0)
  return {"SAP_score": float(np.mean(sorted_DxK[-1] - sorted_DxK[-2]))}
