"""Scores that fix one factor over a batch and ask which factor it was: beta-VAE and FactorVAE.

Defaults are disentanglement_lib's unsupervised study (config/unsupervised_study_v1/
metric_configs/beta_vae_sklearn.gin and factor_vae_metric.gin). Chance is 1 / factors.
"""

import numpy as np
from sklearn import linear_model

from aejax.analysis.disentanglement import source as source_lib


def beta_vae_score(source, representation_fn, random_state, batch_size: int = 64,
                   num_train: int = 10000, num_eval: int = 5000) -> dict[str, float]:
  """Higgins et al. 2017: accuracy of a linear classifier naming the factor held fixed.

  disentanglement_lib/evaluation/metrics/beta_vae.py: compute_beta_vae_sklearn. Each point is
  the mean absolute code difference of batch_size pairs that share one random factor; a
  LogisticRegression (scikit-learn's defaults, as the reference) learns that factor.
  """
  sizes = source_lib.check_source(source)
  source_lib.check_sizes(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
  random_state = source_lib.random_state_of(random_state)
  train_PxD, train_labels = _beta_vae_points(source, representation_fn, batch_size, num_train,
                                             random_state, sizes)
  model = linear_model.LogisticRegression(random_state=random_state)
  model.fit(train_PxD, train_labels)
  train_accuracy = np.mean(model.predict(train_PxD) == train_labels)
  eval_PxD, eval_labels = _beta_vae_points(source, representation_fn, batch_size, num_eval,
                                           random_state, sizes)
  return {"train_accuracy": float(train_accuracy),
          "eval_accuracy": float(model.score(eval_PxD, eval_labels))}


def _beta_vae_points(source, representation_fn, batch_size, num_points, random_state, sizes):
  """(features [P, D], fixed factor [P]): beta_vae.py's _generate_training_batch."""
  features, labels = [], np.zeros(num_points, np.int64)
  for i in range(num_points):
    labels[i] = random_state.randint(len(sizes))
    factors1_BxK = source_lib.sample_factors(source, batch_size, random_state, sizes)
    factors2_BxK = source_lib.sample_factors(source, batch_size, random_state, sizes)
    factors2_BxK[:, labels[i]] = factors1_BxK[:, labels[i]]
    codes1_BxD = source_lib.codes_of(
        representation_fn, source.sample_observations_from_factors(factors1_BxK, random_state))
    codes2_BxD = source_lib.codes_of(
        representation_fn, source.sample_observations_from_factors(factors2_BxK, random_state))
    features.append(np.mean(np.abs(codes1_BxD - codes2_BxD), axis=0))
  return np.stack(features), labels


def factor_vae_score(source, representation_fn, random_state, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000,
                     prune_threshold: float = 0.05) -> dict[str, float]:
  """Kim & Mnih 2018: accuracy of a majority vote from the least-varying code dimension.

  disentanglement_lib/evaluation/metrics/factor_vae.py: compute_factor_vae. Each point fixes
  one random factor over batch_size draws; its vote is the active code dimension whose variance,
  divided by that dimension's variance over num_variance_estimate draws, is smallest. Dimensions
  with a global standard deviation under prune_threshold (0.05 in the study's gin) are collapsed
  and cannot vote; with none active both accuracies are 0. num_active_dims counts the active
  dimensions (the reference reports the length of its mask, i.e. all of them).
  """
  sizes = source_lib.check_source(source)
  source_lib.check_sizes(batch_size=batch_size, num_train=num_train, num_eval=num_eval,
                         num_variance_estimate=num_variance_estimate)
  random_state = source_lib.random_state_of(random_state)
  factors_NxK = source_lib.sample_factors(source, num_variance_estimate, random_state, sizes)
  observations = source.sample_observations_from_factors(factors_NxK, random_state)
  # The reference encodes these in batches of 64 (_compute_variances' eval_batch_size).
  codes_NxD = np.concatenate([source_lib.codes_of(representation_fn, observations[i:i + 64])
                              for i in range(0, num_variance_estimate, 64)])
  global_variances_D = np.var(codes_NxD, axis=0, ddof=1)
  active_D = np.sqrt(global_variances_D) >= prune_threshold
  if not active_D.any():
    return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
  train_votes_KxD = _factor_vae_votes(source, representation_fn, batch_size, num_train,
                                      random_state, global_variances_D, active_D, sizes)
  classifier_D = np.argmax(train_votes_KxD, axis=0)  # The factor each dimension stands for.
  dims = np.arange(train_votes_KxD.shape[1])
  eval_votes_KxD = _factor_vae_votes(source, representation_fn, batch_size, num_eval,
                                     random_state, global_variances_D, active_D, sizes)
  return {
      "train_accuracy": float(train_votes_KxD[classifier_D, dims].sum() / train_votes_KxD.sum()),
      "eval_accuracy": float(eval_votes_KxD[classifier_D, dims].sum() / eval_votes_KxD.sum()),
      "num_active_dims": int(active_D.sum()),
  }


def _factor_vae_votes(source, representation_fn, batch_size, num_points, random_state,
                      global_variances_D, active_D, sizes) -> np.ndarray:
  """[K, D] votes (fixed factor, least-varying active dimension): _generate_training_batch."""
  votes_KxD = np.zeros((len(sizes), len(global_variances_D)), np.int64)
  active_dims = np.flatnonzero(active_D)
  for _ in range(num_points):
    factor = random_state.randint(len(sizes))
    factors_BxK = source_lib.sample_factors(source, batch_size, random_state, sizes)
    factors_BxK[:, factor] = factors_BxK[0, factor]
    codes_BxD = source_lib.codes_of(
        representation_fn, source.sample_observations_from_factors(factors_BxK, random_state))
    local_variances_D = np.var(codes_BxD, axis=0, ddof=1)
    ratio = local_variances_D[active_D] / global_variances_D[active_D]
    votes_KxD[factor, active_dims[np.argmin(ratio)]] += 1
  return votes_KxD
