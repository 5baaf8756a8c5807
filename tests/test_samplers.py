"""The samplers of aejax/analysis/samplers.py against closed forms and the codes they are fitted to.

Each test names, after "catches:", the change to samplers.py it was seen to fail on.
"""

import types

import ml_collections
import numpy as np
import pytest

from aejax.analysis import samplers
from aejax.analysis import two_stage
from aejax.errors import UserError

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def _mixture_codes(n: int, seed: int = 0) -> np.ndarray:
  """[n, 3] codes from three correlated Gaussian clusters of unequal weights."""
  rng = np.random.default_rng(seed)
  means_3x3 = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 5.0]])
  cov_3x3 = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
  which_n = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
  return means_3x3[which_n] + rng.multivariate_normal(np.zeros(3), cov_3x3, size=n)


def _mixture_moments(gmm) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of a fitted mixture in closed form, from its weights, means and full
  covariances: E z = sum_k w_k mu_k, Cov z = sum_k w_k (S_k + mu_k mu_k^T) - E z E z^T."""
  w_K, mu_KxZ, s_KxZxZ = gmm.weights_, gmm.means_, gmm.covariances_
  mean_Z = w_K @ mu_KxZ
  second_ZxZ = np.einsum("k,kij->ij", w_K, s_KxZxZ + mu_KxZ[:, :, None] * mu_KxZ[:, None, :])
  return mean_Z, second_ZxZ - np.outer(mean_Z, mean_Z)


def test_gmm_samples_have_the_fitted_mixtures_mean_and_covariance():
  """catches: covariance_type="diag" (the clusters' correlation lost); the samples returned
  grouped by component as scikit-learn draws them (the first ones all from one component)."""
  codes_NxZ = _mixture_codes(3000)
  gmm = samplers.gaussian_mixture(codes_NxZ, 3, seed=0)
  z_NxZ = samplers.gmm_sample(gmm, 40_000, seed=1)
  assert z_NxZ.shape == (40_000, 3) and z_NxZ.dtype == np.float32
  # The codes' own covariance, to within the 3,000 codes' sampling error (~0.16 an entry): a
  # diagonal mixture loses the clusters' within correlation, 0.8 in (x, y).
  np.testing.assert_allclose(np.cov(z_NxZ.T), np.cov(codes_NxZ.T), atol=0.45)
  mean_Z, cov_ZxZ = _mixture_moments(gmm)
  # The mixture's variances are at most ~6: the mean's standard error is ~0.012 at this n and
  # a covariance entry's ~0.05; the tolerances are about 4 of them.
  np.testing.assert_allclose(z_NxZ.mean(0), mean_Z, atol=0.05)
  np.testing.assert_allclose(np.cov(z_NxZ.T), cov_ZxZ, atol=0.2)
  # Each cluster's within correlation 0.8 (x, y) survives only with full covariances: the
  # heaviest component's own covariance holds it.
  k = np.argmax(gmm.weights_)
  np.testing.assert_allclose(gmm.covariances_[k][0, 1], 0.8, atol=0.1)
  # Any prefix is a sample of the whole mixture (the figure shows the first 64, KID takes
  # subsets): the first 2,000's mean is within ~4 standard errors (0.05) of the mixture's.
  np.testing.assert_allclose(z_NxZ[:2000].mean(0), mean_Z, atol=0.25)


def test_gmm_samples_depend_on_the_seed_only():
  """catches: gmm.set_params(random_state=seed) dropped (every seed then draws the fit's codes,
  only reordered); a random state shared across draws (the same seed gives other codes after
  an earlier draw)."""
  gmm = samplers.gaussian_mixture(_mixture_codes(500), 2, seed=0)
  first = samplers.gmm_sample(gmm, 100, seed=3)
  samplers.gmm_sample(gmm, 50, seed=4)
  np.testing.assert_array_equal(samplers.gmm_sample(gmm, 100, seed=3), first)
  # Other codes, not the same codes in another order.
  other = samplers.gmm_sample(gmm, 100, seed=5)
  assert not np.allclose(np.sort(other, axis=0), np.sort(first, axis=0))


def _vq_setup(n: int = 4000, seed: int = 0):
  """A codebook of 5 entries in 2-D, the train codes' entry indices [n, 3] per position with
  different frequencies per position (entry 4 never used at position 0), and the codes as the
  straight-through quantiser lays them out, [n, 3 * 2], with its rounding."""
  rng = np.random.default_rng(seed)
  codebook_KxD = rng.normal(size=(5, 2)).astype(np.float32)
  probs_PxK = np.array([[0.5, 0.3, 0.1, 0.1, 0.0],
                        [0.1, 0.1, 0.1, 0.1, 0.6],
                        [0.2, 0.2, 0.2, 0.2, 0.2]])
  idx_NxP = np.stack([rng.choice(5, size=n, p=p) for p in probs_PxK], axis=1)
  codes_NxL = codebook_KxD[idx_NxP].reshape(n, -1) + rng.normal(scale=1e-6, size=(n, 6))
  return codebook_KxD, idx_NxP, codes_NxL.astype(np.float32)


def test_vq_categorical_fits_each_positions_train_frequencies():
  """catches: argmax for argmin in nearest_entries; counts pooled over positions (one
  categorical for the whole grid); the count divided by the positions rather than the codes."""
  codebook_KxD, idx_NxP, codes_NxL = _vq_setup()
  fitted = samplers.VQCategorical.fit(codes_NxL, codebook_KxD)
  want_PxK = np.stack([np.bincount(idx_NxP[:, p], minlength=5) for p in range(3)]) / len(idx_NxP)
  np.testing.assert_allclose(fitted.probs_PxK, want_PxK, atol=1e-12)


def test_vq_categorical_samples_the_train_frequencies_per_position():
  """catches: one categorical shared by every position (e.g. probs_PxK.mean(0)); the drawn
  entries laid out [D, P] rather than [P, D]; an entry a position never used drawn there
  (log 0 replaced by log of a floor)."""
  codebook_KxD, idx_NxP, codes_NxL = _vq_setup()
  fitted = samplers.VQCategorical.fit(codes_NxL, codebook_KxD)
  n = 40_000
  z_NxL = fitted.sample(n, seed=1)
  assert z_NxL.shape == (n, 6) and z_NxL.dtype == np.float32
  # Each drawn D-vector is a codebook entry, at its position's place in the layout.
  drawn_NxP = samplers.nearest_entries(z_NxL, codebook_KxD)
  np.testing.assert_array_equal(z_NxL.reshape(n, 3, 2), codebook_KxD[drawn_NxP])
  freq_PxK = np.stack([np.bincount(drawn_NxP[:, p], minlength=5) for p in range(3)]) / n
  train_PxK = np.stack([np.bincount(idx_NxP[:, p], minlength=5) for p in range(3)]) / 4000
  # A frequency's standard error at n = 40,000 is at most 0.0025: 0.012 is about 5 of them.
  np.testing.assert_allclose(freq_PxK, train_PxK, atol=0.012)
  assert freq_PxK[0, 4] == 0.0  # Never used at position 0 in training: never drawn there.
  np.testing.assert_array_equal(fitted.indices(100, seed=1), fitted.indices(100, seed=1))


def _fake_run(name: str, generative: bool = False, codebook_KxD=None):
  config = ml_collections.ConfigDict({"model": {"name": name}})
  return types.SimpleNamespace(
      config=config, is_generative=generative,
      params={"quantizer": {"codebook": codebook_KxD}},
      prior_codes=lambda n, seed: np.full((n, 2), float(seed), np.float32))


def test_each_kind_of_family_gets_its_sampler():
  """catches: a VQ-VAE sent to the Gaussian mixture; a family with a prior fitted ex post
  instead of drawing its prior."""
  codes_NxZ = _mixture_codes(300)
  prior = samplers.for_run(_fake_run("vae", generative=True), codes_NxZ)
  assert prior.kind == "prior"
  np.testing.assert_array_equal(prior.codes(4, 7), np.full((4, 2), 7.0))
  codebook_KxD, _, codes_NxL = _vq_setup(200)
  vq = samplers.for_run(_fake_run("vqvae", codebook_KxD=codebook_KxD), codes_NxL)
  assert vq.kind == "vq_categorical" and "3 positions" in vq.protocol
  assert vq.codes(10, 0).shape == (10, 6)
  for name in ("ae", "rae"):
    gmm = samplers.for_run(_fake_run(name), codes_NxZ, components=2, seed=0)
    assert gmm.kind == "ex_post_gmm" and "2 components" in gmm.protocol
    assert gmm.codes(5, 0).shape == (5, 3)


def test_a_family_without_a_prior_may_sample_a_flow_a_second_stage_or_the_standard_normal(
    monkeypatch):
  """--ex_post_sampler=maf fits the flow to the codes (its samples' mean and spread near the
  codes'), normal draws N(0, I); either asked of a family with its own sampler is one line.
  catches: the flow's samples left standardised (mean 0, std 1 instead of the codes')."""
  codes_NxZ = _mixture_codes(300)
  flow = samplers.for_run(_fake_run("ae"), codes_NxZ, ex_post="maf", seed=0)
  assert flow.kind == "ex_post_maf" and "5 layers" in flow.protocol
  z = flow.codes(2000, 1)
  assert z.shape == (2000, 3) and z.dtype == np.float32
  np.testing.assert_allclose(z.mean(0), codes_NxZ.mean(0), atol=0.3 * codes_NxZ.std(0).max())
  np.testing.assert_allclose(z.std(0), codes_NxZ.std(0), rtol=0.3)
  normal = samplers.for_run(_fake_run("rae"), codes_NxZ, ex_post="normal")
  z = normal.codes(20_000, 3)
  assert normal.kind == "ex_post_normal" and z.shape == (20_000, 3)
  np.testing.assert_allclose([z.mean(), z.std()], [0, 1], atol=0.02)
  # The second stage's fit is tested in test_code_densities.py; here, that it is the one used.
  fits = []
  monkeypatch.setattr(two_stage, "fit", lambda codes, seed: fits.append((codes, seed)) or
                      types.SimpleNamespace(sample=lambda n, s: np.zeros((n, 3), np.float32)))
  second = samplers.for_run(_fake_run("ae"), codes_NxZ, ex_post="two_stage", seed=4)
  assert second.kind == "ex_post_two_stage" and "two-stage VAE" in second.protocol
  assert fits[0][0] is codes_NxZ and fits[0][1] == 4 and second.codes(2, 0).shape == (2, 3)
  for run in (_fake_run("vae", generative=True), _fake_run("vqvae")):
    with pytest.raises(UserError, match="has its own sampler, so leave the flag out") as e:
      samplers.for_run(run, codes_NxZ, ex_post="maf")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("components, match", [(0, "has no sampler"), (301, "exceeds the 300")])
def test_a_family_without_a_sampler_is_one_line(components, match):
  """catches: components=0 reaching scikit-learn (its own ValueError, a traceback); more
  components than codes fitted anyway."""
  with pytest.raises(UserError, match=match) as e:
    samplers.for_run(_fake_run("ae"), _mixture_codes(300), components=components)
  assert "\n" not in str(e.value)
