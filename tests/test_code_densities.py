"""The densities fitted to train codes for the ex-post samplers. The masked autoregressive flow
(aejax/analysis/maf.py): its log-density against the change of variables computed by jax.jacfwd
and slogdet, its sampler as the exact inverse, and a fit to 2-D data whose density integrates to
1 on a grid and beats a Gaussian's likelihood. The two-stage VAE's second stage
(aejax/analysis/two_stage.py): its loss against numpy, and its samples like the codes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.analysis import maf
from aejax.analysis import two_stage

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).
HIDDEN = (16, 16)


def _random_params(latents, layers=3):
  params = maf.init(jax.random.key(0), latents, layers, HIDDEN)
  return jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape), params)


def test_log_prob_is_the_change_of_variables_and_sampling_inverts_it():
  """log p(z) = log N(u(z); 0, I) + log |det du/dz| with the Jacobian from jax.jacfwd; and
  to_noise(from_noise(u)) = u.
  catches: the log-det's sign (-sum alpha taken as +sum alpha); a layer inverted in fewer than
  Z passes."""
  params = _random_params(4)
  z_NxZ = jax.random.normal(jax.random.key(2), (6, 4))
  to_u = lambda z: maf.to_noise(params, z[None], HIDDEN)[0][0]
  want = []
  for z in z_NxZ:
    u = to_u(z)
    want.append(-0.5 * float(jnp.sum(u ** 2)) - 2 * np.log(2 * np.pi)
                + float(jnp.linalg.slogdet(jax.jacfwd(to_u)(z))[1]))
  np.testing.assert_allclose(maf.log_prob(params, z_NxZ, HIDDEN), want, rtol=1e-4, atol=1e-4)
  u_NxZ = jax.random.normal(jax.random.key(3), (6, 4))
  back = maf.to_noise(params, maf.from_noise(params, u_NxZ, HIDDEN), HIDDEN)[0]
  np.testing.assert_allclose(back, u_NxZ, rtol=1e-4, atol=1e-4)


def _two_moons(n, seed):
  rng = np.random.default_rng(seed)
  t = rng.uniform(0, np.pi, n)
  upper = rng.random(n) < 0.5
  x = np.where(upper, np.cos(t), 1 - np.cos(t))
  y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
  return np.stack([x, y], 1) * 2 + 0.1 * rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def fitted():
  return maf.fit(_two_moons(4000, 0), seed=0, hidden=HIDDEN, steps=1500)


def test_the_fitted_density_integrates_to_one_on_a_grid(fitted):
  """The density fitted to two moons (in their units: standardised inside), summed over a grid
  of 0.04 x 0.04 cells that covers the data with a margin, is 1 within 0.02.
  catches: the standardisation's log-det left out (the integral is then the product of the
  stds, 1.7 here)."""
  xs, ys = np.arange(-5, 7, 0.04), np.arange(-4, 5, 0.04)
  grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
  total = np.exp(fitted.log_prob(grid)).sum() * 0.04 * 0.04
  assert abs(total - 1) < 0.02, total


def test_the_fit_beats_a_gaussian_and_samples_look_like_the_data(fitted):
  """Held-out log-likelihood above a full-covariance Gaussian's fitted to the same data; its
  samples' mean that of the data (within 0.15), their covariance within 0.5 (the data's
  variances are 3.0 and 1.0; a fit of 1,500 steps draws the first at 2.6).
  catches: samples left standardised (variances 1)."""
  test = _two_moons(2000, 1)
  train = _two_moons(4000, 0)
  mean, cov = train.mean(0), np.cov(train.T)
  diff = test - mean
  gauss = -0.5 * (np.sum(diff @ np.linalg.inv(cov) * diff, 1) + np.log(np.linalg.det(cov))
                  + 2 * np.log(2 * np.pi))
  assert fitted.log_prob(test).mean() > gauss.mean() + 0.3, (fitted.log_prob(test).mean(),
                                                             gauss.mean())
  samples = fitted.sample(4000, seed=5)
  assert samples.dtype == np.float32 and samples.shape == (4000, 2)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.15)
  np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.5)
  np.testing.assert_array_equal(fitted.sample(10, seed=5), samples[:10])


def test_the_second_stage_loss_is_the_gaussian_decoders_elbo():
  """The negative ELBO per code against numpy from the stage's own encoder and decoder outputs:
  0.5 sum [(z - mu)^2 / gamma + log gamma + log 2 pi] + KL(q(u|z) || N(0, I)), gamma learned.
  catches: log gamma left out of the likelihood (gamma would then grow without bound)."""
  model = two_stage.SecondStage(3, (8,))
  z = jax.random.normal(jax.random.key(0), (5, 3))
  eps = jax.random.normal(jax.random.key(1), (5, 3))
  params = model.init(jax.random.key(2), z, eps)["params"]
  params = {**params, "log_gamma": jnp.float32(-0.7)}
  got = model.apply({"params": params}, z, eps)
  enc = lambda h: model.apply({"params": params}, h, method=lambda m, h: m._mlp(m.encoder, h))
  mean, logvar = np.split(np.asarray(enc(z), np.float64), 2, axis=1)
  u = mean + np.exp(0.5 * logvar) * np.asarray(eps, np.float64)
  mu = np.asarray(model.apply({"params": params}, jnp.asarray(u, jnp.float32), method="decode"),
                  np.float64)
  zz, gamma = np.asarray(z, np.float64), np.exp(-0.7)
  want = (0.5 * np.sum((zz - mu) ** 2 / gamma + np.log(gamma) + np.log(2 * np.pi), 1)
          + 0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar, 1))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_second_stage_samples_like_the_codes():
  """Fitted to two moons, its samples' mean is the data's (within 0.15) and its variances within
  0.5 of the data's (3.0 and 1.0), and the learned gamma fell below its initial 1.
  catches: samples left standardised (variances 1)."""
  data = _two_moons(4000, 0)
  fitted = two_stage.fit(data, seed=0, hidden=(32, 32), steps=1500)
  samples = fitted.sample(4000, seed=1)
  assert samples.dtype == np.float32 and samples.shape == (4000, 2)
  np.testing.assert_allclose(samples.mean(0), data.mean(0), atol=0.15)
  np.testing.assert_allclose(np.cov(samples.T), np.cov(data.T), atol=0.5)
  assert fitted.gamma < 1.0, fitted.gamma
