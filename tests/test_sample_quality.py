"""Sample-quality metrics against independent numpy/scipy computations from their definitions.

Each test names, after "catches:", the change to aejax/analysis/sample_quality.py it was seen to
fail on.
"""

import operator

import numpy as np
import pytest
import scipy.linalg

from aejax.analysis import sample_quality as sq
from aejax.errors import UserError

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


# -- Fréchet distance ----------------------------------------------------------------------------

def test_frechet_distance_of_samples_approaches_that_of_their_gaussians():
  """catches: the mean term dropped; sqrtm's trace not doubled; sigma2 in place of sigma1."""
  # Two covariances with the same eigenvectors: sqrt(S1 S2) = Q diag(sqrt(a b)) Q^T, so
  # FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 in closed form.
  q_4x4, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
  a_4, b_4 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 1.0, 1.0, 0.25])
  mu1_4, mu2_4 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
  want = np.sum((mu1_4 - mu2_4) ** 2) + np.sum((np.sqrt(a_4) - np.sqrt(b_4)) ** 2)  # 6.947
  rng = np.random.default_rng(0)
  x = rng.multivariate_normal(mu1_4, q_4x4 @ np.diag(a_4) @ q_4x4.T, size=100_000)
  y = rng.multivariate_normal(mu2_4, q_4x4 @ np.diag(b_4) @ q_4x4.T, size=100_000)
  # Over 20 seeds at this n the estimate's std was 0.027 around 6.945: 0.1 is about 4 stds.
  assert sq.frechet_distance(x, y) == pytest.approx(want, abs=0.1)
  assert sq.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def _frechet_by_symmetric_root(x, y):
  """FD from the symmetric form Tr sqrt(S1^1/2 S2 S1^1/2) (the same eigenvalues as S1 S2), with
  eigh: no scipy.linalg.sqrtm, no complex numbers."""
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  w, v = np.linalg.eigh(s1)
  root1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
  diff = x.mean(0) - y.mean(0)
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))


@pytest.mark.filterwarnings("error")
def test_frechet_distance_of_singular_covariances_drops_the_imaginary_rounding():
  """catches: covmean.real not taken (numpy's ComplexWarning from float()); the tolerance on the diagonal's
  imaginary part tightened to 0 (an error raised)."""
  rng = np.random.default_rng(0)
  # 5 samples in 12 dimensions: rank-4 covariances; scipy's square root of their product comes
  # back complex with imaginary parts of rounding size.
  x, y = rng.normal(size=(5, 12)), rng.normal(size=(5, 12)) + 0.5
  assert np.iscomplexobj(scipy.linalg.sqrtm(np.cov(x, rowvar=False) @ np.cov(y, rowvar=False)))
  got = sq.frechet_distance(x, y)
  assert isinstance(got, float)
  assert got == pytest.approx(_frechet_by_symmetric_root(x, y), rel=1e-6)


def test_frechet_distance_retries_a_non_finite_root_with_the_eps_offset(monkeypatch):
  """catches: the retry without the offset (NaN comes back); the offset on one covariance only."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
  real_sqrtm, calls = sq._sqrtm, []

  def failing_once(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(sq, "_sqrtm", failing_once)
  got = sq.frechet_distance(x, y, eps=0.5)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  # pytorch-fid: the traces of the covariances as they are, the root of the offset product.
  want = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
          - 2 * np.trace(scipy.linalg.sqrtm((s1 + 0.5 * np.eye(3)) @ (s2 + 0.5 * np.eye(3)))).real)
  assert len(calls) == 2
  assert got == pytest.approx(want, rel=1e-9)


def test_frechet_distance_refuses_a_clearly_complex_root(monkeypatch):
  """catches: an imaginary diagonal silently dropped."""
  monkeypatch.setattr(sq, "_sqrtm", lambda a: a + 0.1j * np.eye(len(a)))
  rng = np.random.default_rng(0)
  with pytest.raises(UserError, match="imaginary part of 0.1.*pass more samples"):
    sq.frechet_distance(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)))


# -- KID -----------------------------------------------------------------------------------------

def _mmd2_double_loop(x, y):
  """The unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, one pair at a time (float64)."""
  d = x.shape[1]
  k = lambda a, b: (np.dot(a, b) / d + 1.0) ** 3
  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def _kid_sets(seed, n, m, d=6):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          (1.3 * rng.normal(size=(m, d)) + 0.4).astype(np.float32))


def test_kid_of_whole_sets_is_the_unbiased_mmd2_of_a_double_loop():
  """catches: the biased estimator (diagonals kept); / m^2 in place of / (m (m - 1)); the kernel
  without its + 1; the degree 2 in place of 3; / D dropped."""
  x, y = _kid_sets(0, 30, 30)
  # 30 points each: every subset is the whole set (in some order), so every subset's MMD^2 is
  # the double loop's and their std is 0.
  mean, std = sq.kid(x, y, seed=3)
  want = _mmd2_double_loop(x.astype(np.float64), y.astype(np.float64))
  assert want > 0.05
  assert mean == pytest.approx(want, rel=1e-5)
  assert std == pytest.approx(0.0, abs=1e-5 * want)


def test_kid_over_subsets_matches_numpy_subsets_of_the_same_sets():
  """catches: subsets drawn with replacement (the mean too high); the standard error (std /
  sqrt(subsets)) in place of the std; max_subset ignored (subsets of min(N, M): std too small)."""
  x, y = _kid_sets(1, 80, 60)
  mean, std = sq.kid(x, y, seed=0, subsets=100, max_subset=20)
  # The same estimator over 4,000 numpy subsets (each a draw without replacement): its mean is
  # that of the whole sets' unbiased MMD^2, since every pair is equally likely in a subset.
  rng = np.random.default_rng(7)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  d = x.shape[1]
  mmd2s = []
  for _ in range(4000):
    xs, ys = x64[rng.choice(80, 20, replace=False)], y64[rng.choice(60, 20, replace=False)]
    kxx, kyy, kxy = ((xs @ xs.T / d + 1) ** 3, (ys @ ys.T / d + 1) ** 3, (xs @ ys.T / d + 1) ** 3)
    mmd2s.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (20 * 19)
                 - 2 * kxy.sum() / 400)
  ref_mean, ref_std = np.mean(mmd2s), np.std(mmd2s)
  assert ref_mean == pytest.approx(_mmd2_double_loop(x64, y64), abs=3 * ref_std / np.sqrt(4000))
  # 100 subsets: the mean's standard error is ref_std / 10; the std's relative error ~7%.
  assert mean == pytest.approx(ref_mean, abs=3 * ref_std / 10)
  assert std == pytest.approx(ref_std, rel=0.25)
  # Seeded: the same subsets again, other ones under another seed.
  assert sq.kid(x, y, seed=0, subsets=100, max_subset=20) == (mean, std)
  assert sq.kid(x, y, seed=1, subsets=100, max_subset=20)[0] != mean


# -- Precision, recall, density, coverage --------------------------------------------------------

def _brute_prdc(x, y, pr_k, dc_k, pr_inside=operator.le, dc_inside=operator.lt):
  """P, R (inside: distance <= radius, k = pr_k) and D, C (inside: <, k = dc_k) from the
  definitions, one point at a time, each radius the k-th smallest distance to the *other* points
  of its set."""
  dist = lambda a, b: float(np.sqrt(np.sum((a - b) ** 2)))

  def radius(s, i, k):
    return sorted(dist(s[i], s[j]) for j in range(len(s)) if j != i)[k - 1]

  r_pr_x = [radius(x, i, pr_k) for i in range(len(x))]
  r_dc_x = [radius(x, i, dc_k) for i in range(len(x))]
  r_pr_y = [radius(y, j, pr_k) for j in range(len(y))]
  d = [[dist(x[i], y[j]) for j in range(len(y))] for i in range(len(x))]
  rows, cols = range(len(x)), range(len(y))
  precision = np.mean([any(pr_inside(d[i][j], r_pr_x[i]) for i in rows) for j in cols])
  recall = np.mean([any(pr_inside(d[i][j], r_pr_y[j]) for j in cols) for i in rows])
  density = sum(dc_inside(d[i][j], r_dc_x[i]) for i in rows for j in cols) / (dc_k * len(y))
  coverage = np.mean([dc_inside(min(d[i]), r_dc_x[i]) for i in rows])
  return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_of_overlapping_gaussians_matches_brute_force():
  """catches: the radius of the k-th smallest distance counting the point itself (k - 1 other
  neighbours); precision and recall's radii swapped; density / M without / k."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 8))
  y = 1.2 * rng.normal(size=(50, 8)) + 1.0
  want = _brute_prdc(x, y, 3, 5)
  assert all(0.2 < value < 0.8 for value in want.values())  # none trivial
  assert sq.prdc(x, y) == pytest.approx(want, abs=1e-12)


def test_prdc_of_features_far_from_the_origin():
  """Distances do not see a common offset; float32's |a|^2 - 2 a.b + |b|^2 would, at |a| ~ 3e3
  (rounding of |a|^2 ~ 0.5, squared distances ~ 10).
  catches: the features not centred on the real mean."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 8))
  y = 1.2 * rng.normal(size=(50, 8)) + 1.0
  assert sq.prdc(x + 1000.0, y + 1000.0) == pytest.approx(_brute_prdc(x, y, 3, 5), abs=1e-12)


def test_prdc_compares_ties_as_the_references_do():
  """On an integer lattice many distances tie a radius exactly (float32 holds them exactly).
  catches: `<` in place of `<=` for precision or for recall; `<=` in place of `<` for density or
  for coverage."""
  rng = np.random.default_rng(0)
  half = rng.integers(-3, 4, size=(25, 3))
  x = np.concatenate([half, -half]).astype(np.float64)  # mean exactly 0: centring is exact
  decided = set()
  for width in (3, 4):
    y = rng.integers(-width, width + 1, size=(50, 3)).astype(np.float64)
    got = sq.prdc(x, y)
    assert got == pytest.approx(_brute_prdc(x, y, 3, 5), abs=1e-12)
    flipped = _brute_prdc(x, y, 3, 5, pr_inside=operator.lt, dc_inside=operator.le)
    decided |= {name for name in got if flipped[name] != pytest.approx(got[name], abs=1e-12)}
  # On one set or the other, the other choice of each comparison gives another number.
  assert decided == {"precision", "recall", "density", "coverage"}


def test_prdc_of_identical_and_of_far_apart_sets():
  """catches: each set centred on its own mean (the copies no longer coincide); the nearest
  distance starting at 0 instead of inf (coverage 1 for the far set)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 8))
  same = sq.prdc(x, x)
  assert (same["precision"], same["recall"], same["coverage"]) == (1.0, 1.0, 1.0)
  assert same["density"] == pytest.approx(_brute_prdc(x, x, 3, 5)["density"], abs=1e-12)
  far = sq.prdc(x, x + 1000.0)
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_in_many_blocks_is_prdc_in_one(monkeypatch):
  """Blocks of 7 rows (the last one padded) give the numbers of a single block.
  catches: padding rows not masked (they sit at the real mean, so they are recalled and cover);
  the carry of recall or of the nearest distance reset per block."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 8))
  y = 2.0 * rng.normal(size=(45, 8))
  want = _brute_prdc(x, y, 3, 5)
  monkeypatch.setattr(sq, "_BLOCK_ELEMENTS", 7 * 50)
  assert sq._chunk(45, 50) == 7 and 45 % 7 != 0
  assert sq.prdc(x, y) == pytest.approx(want, abs=1e-12)


# -- Bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", [sq.frechet_distance, sq.kid, sq.prdc, sq.sample_quality])
def test_mismatched_dimensions_are_one_line(metric):
  """catches: the dimension check removed (numpy's broadcasting error or a wrong number)."""
  with pytest.raises(UserError, match=r"real features have 8 dimensions and generated ones 6; "
                     r"compute both with the same feature network") as err:
    metric(np.zeros((50, 8)), np.zeros((50, 6)))
  assert "\n" not in str(err.value)


def test_fewer_samples_than_k_plus_one_are_one_line():
  """catches: the sample count checked against k instead of k + 1 (top_k of 6 out of 5 fails
  inside XLA, not as a UserError)."""
  x, y = np.random.default_rng(0).normal(size=(2, 20, 4))
  with pytest.raises(UserError, match=r"k = 5\) needs at least 6 real and 4 generated samples, "
                     r"got 5 and 20; pass more samples") as err:
    sq.prdc(x[:5], y)
  assert "\n" not in str(err.value)
  with pytest.raises(UserError, match="needs at least 6 real and 4 generated samples, got 20 "
                     "and 3"):
    sq.prdc(x, y[:3])
  with pytest.raises(UserError, match="KID needs at least 2 real"):
    sq.kid(x[:1], y)
  with pytest.raises(UserError, match="NaN or infinite"):
    sq.frechet_distance(x, np.where(y > 1, np.nan, y))
