"""The disentanglement metrics (aejax.analysis.disentanglement) against known answers and against
independent numpy computations of their definitions.

The source is four discrete factors (3, 4, 5 and 6 values) whose observation is the vector of
factor indices, so a representation is a known function of the factors. Sample sizes are
reduced from the reference's; each test names the mutation of the code it was seen to catch.
"""

import numpy as np
import pytest
import scipy.stats
from sklearn import ensemble
from sklearn import linear_model
from sklearn import svm

from aejax.analysis import disentanglement as dis
from aejax.analysis.disentanglement import information
from aejax.analysis.disentanglement import predictors
from aejax.errors import UserError

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).

SIZES = (3, 4, 5, 6)
SMALL = {  # Reduced sample sizes: the file runs in seconds, the scores stay clear of chance.
    "beta_vae": {"num_train": 300, "num_eval": 200},
    "factor_vae": {"num_train": 300, "num_eval": 200, "num_variance_estimate": 500},
    "mig": {"num_train": 1000},
    "dci": {"num_train": 500, "num_test": 300},
    "sap": {"num_train": 500, "num_test": 300, "continuous_factors": True},
    "modularity_explicitness": {"num_train": 1000, "num_test": 500},
}


class FactorVector:
  """A ground-truth source whose observation is its factor indices as floats."""
  factors_num_values = SIZES

  def sample_factors(self, num, random_state):
    return np.stack([random_state.randint(v, size=num) for v in SIZES], axis=1)

  def sample_observations_from_factors(self, factors, random_state):
    del random_state
    return factors.astype(np.float64)


SOURCE = FactorVector()
STD = np.sqrt((np.square(SIZES) - 1) / 12.0)  # Of a uniform factor index.


def identity(x):
  return x


def permuted_rescaled(x):
  return x[:, [2, 0, 3, 1]] * np.array([2.0, -0.5, 3.0, 0.1]) + 7.0


def rotated(x):
  """Factors 0 and 1, standardised, mixed by a 45 degree rotation; the others kept."""
  z = (x[:, :2] - (np.array(SIZES[:2]) - 1) / 2) / STD[:2]
  return np.concatenate([z @ np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2), x[:, 2:]], axis=1)


def noise_fn():
  rng = np.random.RandomState(123)
  return lambda x: rng.randn(len(x), len(SIZES))


def scores(representation_fn, seed=0):
  """{"metric/score": value} of every metric at the reduced sizes."""
  return {f"{name}/{key}": value for name, metric in dis.METRICS.items()
          for key, value in metric(SOURCE, representation_fn, seed, **SMALL[name]).items()}


@pytest.fixture(scope="module")
def known():
  return {"identity": scores(identity), "permuted": scores(permuted_rescaled),
          "rotated": scores(rotated), "noise": scores(noise_fn())}


MAXIMA = ["beta_vae/eval_accuracy", "factor_vae/eval_accuracy", "mig/discrete_mig",
          "dci/disentanglement", "dci/completeness", "dci/informativeness_test", "sap/SAP_score",
          "modularity_explicitness/modularity_score",
          "modularity_explicitness/explicitness_score_test"]


@pytest.mark.parametrize("code", ["identity", "permuted"])
def test_factors_as_code_score_the_maximum(known, code):
  """The factors themselves, or permuted and rescaled, are a perfectly disentangled code.

  catches: FactorVAE's vote cast for the largest variance ratio (eval accuracy 1.0 -> 0.42);
  SAP's gap taken from the unsorted scores (1.0 -> 0.003); beta-VAE's pairs not sharing the
  fixed factor (1.0 -> 0.285).
  """
  got = known[code]
  for key in MAXIMA:
    assert got[key] >= 0.98, (key, got[key])
  assert got["factor_vae/num_active_dims"] == 4


def test_noise_scores_at_chance(known):
  """Codes independent of the factors: each accuracy at 1 / classes, each gap and entropy score
  near 0, each ROC-AUC near 0.5.

  catches: explicitness's test AUC taken on the training codes (0.50 -> 0.536).
  """
  got = known["noise"]
  assert abs(got["beta_vae/eval_accuracy"] - 1 / 4) < 0.08
  assert abs(got["factor_vae/eval_accuracy"] - 1 / 4) < 0.08
  assert got["mig/discrete_mig"] < 0.02
  assert got["dci/disentanglement"] < 0.05 and got["dci/completeness"] < 0.05
  # A GBT's test accuracy is at most the majority class's frequency, about 1 / values.
  assert abs(got["dci/informativeness_test"] - np.mean(1 / np.array(SIZES))) < 0.06
  assert got["sap/SAP_score"] < 0.03
  assert abs(got["modularity_explicitness/explicitness_score_test"] - 0.5) < 0.03
  # Modularity has no fixed chance level: the MI estimates' bias makes noise half-modular.
  assert got["modularity_explicitness/modularity_score"] < 0.8


def test_rotation_of_two_factors_scores_below_identity(known):
  """Mixing factors 0 and 1 halves their separation.

  catches: MIG's mutual informations sorted along factors instead of codes (the identity's
  MIG falls to -0.25, below the rotation's).
  """
  for key in ["mig/discrete_mig", "dci/disentanglement", "sap/SAP_score"]:
    assert known["rotated"][key] < known["identity"][key] - 0.2, key


def test_seed_fixes_the_scores():
  """catches: DCI's trees left unseeded, as in the reference (two runs differ)."""
  first = dis.dci(SOURCE, rotated, 3, **SMALL["dci"])
  assert dis.dci(SOURCE, rotated, 3, **SMALL["dci"]) == first
  assert dis.mig(SOURCE, noise_fn(), 1, num_train=500) != dis.mig(SOURCE, noise_fn(), 2,
                                                                   num_train=500)


# Independent computations of the definitions, on a fixed small representation.

def fixed_codes(num, seed):
  """[num, 3] codes mixing the factors nonlinearly with noise, and their [num, 4] factors."""
  rng = np.random.RandomState(seed)
  factors = SOURCE.sample_factors(num, rng)
  f = factors.astype(np.float64)
  codes = np.stack([f[:, 0] + 0.3 * f[:, 1] + 0.2 * rng.randn(num),
                    np.tanh(f[:, 2] - 2) + 0.3 * rng.randn(num),
                    0.1 * f[:, 3] ** 2 + rng.randn(num)], axis=1)
  return codes, factors


def np_bins(x, num_bins=20):
  """Equal-width bins 1..num_bins between the sample's min and max."""
  return np.clip(np.floor((x - x.min()) / (x.max() - x.min()) * num_bins), 0, num_bins - 1) + 1


def np_mutual_info(a, b):
  """Mutual information (nats) of two discrete samples from their joint frequencies."""
  _, ia = np.unique(a, return_inverse=True)
  _, ib = np.unique(b, return_inverse=True)
  joint = np.zeros((ia.max() + 1, ib.max() + 1))
  np.add.at(joint, (ia, ib), 1.0)
  joint /= joint.sum()
  outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
  nz = joint > 0
  return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))


def np_mi_matrix(codes, factors):
  return np.array([[np_mutual_info(np_bins(codes[:, d]), factors[:, k])
                    for k in range(factors.shape[1])] for d in range(codes.shape[1])])


def test_mig_matches_numpy():
  """catches: 10 bins instead of 20; the gap taken to the smallest MI, not the second largest;
  the gap divided by log(distinct values) instead of the sample's entropy."""
  codes, factors = fixed_codes(400, 0)
  mi = np_mi_matrix(codes, factors)
  entropy = np.array([np_mutual_info(factors[:, k], factors[:, k]) for k in range(4)])
  top2 = -np.sort(-mi, axis=0)[:2]
  expected = np.mean((top2[0] - top2[1]) / entropy)
  got = information.mig_of_codes(codes, factors)["discrete_mig"]
  np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_mig_samples_as_the_reference():
  """The source-level MIG scores batches of 16 drawn in order; 37 points leave a last batch of 5.

  catches: all points drawn in one batch (other draws, another score).
  """
  rng = np.random.RandomState(5)
  factors = np.concatenate([SOURCE.sample_factors(min(16, 37 - i), rng) for i in range(0, 37, 16)])
  codes = rotated(factors.astype(np.float64))
  expected = information.mig_of_codes(codes, factors)
  assert dis.mig(SOURCE, rotated, 5, num_train=37) == expected


def test_modularity_matches_numpy():
  """Ridgeway & Mozer's deviation from the template that keeps each code's largest MI.

  catches: the denominator's (K - 1) dropped; the largest squared MI kept in the numerator.
  """
  codes, factors = fixed_codes(400, 1)
  mi = np_mi_matrix(codes, factors)
  theta = mi.max(axis=1)
  template = np.where(mi == theta[:, None], theta[:, None], 0.0)
  delta = np.sum((mi - template) ** 2, axis=1) / (theta**2 * (mi.shape[1] - 1))
  np.testing.assert_allclose(information.modularity(mi), np.mean(1 - delta), rtol=1e-12)
  test_codes, test_factors = fixed_codes(300, 2)
  got = information.modularity_explicitness_of_codes(codes, factors, test_codes, test_factors)
  np.testing.assert_allclose(got["modularity_score"], np.mean(1 - delta), rtol=1e-9)
  # Closed form: one code shared by two factors of equal MI deviates by 1 / (K - 1).
  np.testing.assert_allclose(information.modularity(np.hstack([np.eye(5), np.eye(5)])), 1 - 1 / 9)


def np_auc(scores, positive):
  """ROC-AUC as the Mann-Whitney statistic: the chance a positive outranks a negative."""
  ranks = scipy.stats.rankdata(scores)
  n_pos = positive.sum()
  return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(scores) - n_pos))


def test_explicitness_matches_numpy():
  """catches: the test codes standardised by their own mean and std, not the training ones."""
  codes, factors = fixed_codes(400, 1)
  test_codes, test_factors = fixed_codes(300, 2)
  mean, std = codes.mean(0), codes.std(0)
  expected = []
  for k in range(4):
    clf = linear_model.LogisticRegression().fit((codes - mean) / std, factors[:, k])
    proba = clf.predict_proba((test_codes - mean) / std)
    expected.append(np.mean([np_auc(proba[:, c], test_factors[:, k] == cls)
                             for c, cls in enumerate(clf.classes_)]))
  got = information.modularity_explicitness_of_codes(codes, factors, test_codes, test_factors)
  np.testing.assert_allclose(got["explicitness_score_test"], np.mean(expected), rtol=1e-9)


def test_dci_matches_numpy():
  """Eastwood & Williams' D, C and I from the same trees' importances, by numpy entropies.

  catches: completeness computed on the untransposed matrix (its entropy over factors, not
  codes); rows weighted uniformly instead of by their share of importance.
  """
  codes, factors = fixed_codes(300, 3)
  test_codes, test_factors = fixed_codes(200, 4)
  seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=4)
  importance = np.zeros((3, 4))
  accuracy = []
  for k in range(4):
    model = ensemble.GradientBoostingClassifier(random_state=seeds[k]).fit(codes, factors[:, k])
    importance[:, k] = model.feature_importances_
    accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, k]))

  def one_minus_entropy(p, base):
    p = p / p.sum()
    p = p[p > 0]
    return 1 + np.sum(p * np.log(p)) / np.log(base)

  d = sum(one_minus_entropy(importance[i], 4) * importance[i].sum() / importance.sum()
          for i in range(3))
  c = sum(one_minus_entropy(importance[:, j], 3) * importance[:, j].sum() / importance.sum()
          for j in range(4))
  got = predictors.dci_of_codes(codes, factors, test_codes, test_factors, 0)
  np.testing.assert_allclose([got["disentanglement"], got["completeness"],
                              got["informativeness_test"]], [d, c, np.mean(accuracy)], rtol=1e-8)
  # Closed forms: one code for two factors; each factor split over two codes.
  np.testing.assert_allclose(predictors.disentanglement(np.hstack([np.eye(5)] * 2)),
                             1 - np.log(2) / np.log(10))
  np.testing.assert_allclose(predictors.completeness(np.vstack([np.eye(5)] * 2)),
                             1 - np.log(2) / np.log(10))


def test_sap_matches_numpy():
  """The mean over factors of the best minus the second-best dimension's score.

  catches: the continuous score's square dropped (|correlation| instead of its square); the
  discrete score on the training points instead of the test points.
  """
  codes, factors = fixed_codes(400, 5)
  test_codes, test_factors = fixed_codes(300, 6)
  r2 = np.array([[np.corrcoef(codes[:, d], factors[:, k])[0, 1] ** 2 for k in range(4)]
                 for d in range(3)])
  top2 = -np.sort(-r2, axis=0)[:2]
  got = predictors.sap_of_codes(codes, factors, test_codes, test_factors, 0, True)
  np.testing.assert_allclose(got["SAP_score"], np.mean(top2[0] - top2[1]), rtol=1e-9)

  rng = np.random.RandomState(0)
  accuracy = np.zeros((3, 4))
  for d in range(3):
    for k in range(4):
      clf = svm.LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=rng)
      clf.fit(codes[:, d:d + 1], factors[:, k])
      accuracy[d, k] = np.mean(clf.predict(test_codes[:, d:d + 1]) == test_factors[:, k])
  top2 = -np.sort(-accuracy, axis=0)[:2]
  got = predictors.sap_of_codes(codes, factors, test_codes, test_factors, 0, False)
  np.testing.assert_allclose(got["SAP_score"], np.mean(top2[0] - top2[1]), rtol=1e-12)


def test_factor_vae_prunes_collapsed_dimensions():
  """A constant code dimension cannot vote; a code with no active dimension scores 0.

  catches: the prune threshold compared with the variance, not the standard deviation (a
  dimension of std 0.1 pruned as 0.01 < 0.05: 5 -> 4 active).
  """
  def with_small(x):
    return np.concatenate([x, np.zeros((len(x), 1)), 0.1 * np.random.RandomState(0).randn(
        len(x), 1)], axis=1)
  got = dis.factor_vae_score(SOURCE, with_small, 0, **SMALL["factor_vae"])
  assert got["num_active_dims"] == 5
  assert got["eval_accuracy"] >= 0.98
  assert dis.factor_vae_score(SOURCE, np.zeros_like, 0, **SMALL["factor_vae"]) == {
      "train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


class NoFactors:
  """A dataset of observations alone."""


class Constant(FactorVector):
  factors_num_values = (3, 1)


class Values(FactorVector):
  def sample_factors(self, num, random_state):
    return super().sample_factors(num, random_state) / 2.0


@pytest.mark.parametrize("call, message", [
    (lambda: dis.mig(NoFactors(), identity, 0), "holds no ground-truth factors"),
    (lambda: dis.dci(type("Empty", (FactorVector,), {"factors_num_values": ()})(), identity, 0),
     "has no ground-truth factors"),
    (lambda: dis.sap(Constant(), identity, 0), r"factors \[1\] take fewer than 2 values"),
    (lambda: dis.mig(Values(), identity, 0, num_train=10), "integer factor indices"),
    (lambda: dis.factor_vae_score(SOURCE, identity, 0, batch_size=1), "batch_size=1"),
    (lambda: dis.factor_vae_score(SOURCE, identity, 0, num_variance_estimate=1),
     "num_variance_estimate=1 must be an integer >= 2"),
    (lambda: dis.beta_vae_score(SOURCE, identity, 0, num_train=0), "num_train=0"),
    (lambda: dis.mig(SOURCE, identity, 0, num_train=10.5), "num_train=10.5"),
    (lambda: dis.mig(SOURCE, identity, np.random.default_rng(0)), "neither an integer seed"),
    (lambda: dis.mig(SOURCE, lambda x: x[:, 0], 0, num_train=10), "codes of shape"),
    (lambda: dis.mig(SOURCE, lambda x: x / 0.0, 0, num_train=20), "non-finite codes"),
    (lambda: dis.modularity_explicitness(SOURCE, identity, 0, num_train=200, num_test=3),
     "missing from a sample of 3 points"),
    (lambda: dis.sap(SOURCE, lambda x: x[:, :1], 0, num_train=50, num_test=50),
     "at least 2 dimensions"),
])
def test_bad_input_is_one_line(call, message):
  """catches (tried for the missing-factors, integer-index, finite-code and missing-class
  checks): the check removed, then an AttributeError, a silent score or numpy's error."""
  with np.errstate(divide="ignore", invalid="ignore"), pytest.raises(dis.MetricInputError,
                                                                     match=message) as e:
    call()
  assert isinstance(e.value, ValueError) and isinstance(e.value, UserError)
  assert "\n" not in str(e.value)
