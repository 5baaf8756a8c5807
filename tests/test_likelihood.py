"""The importance-sampled likelihood against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

from aejax import likelihood
from aejax import losses
from aejax import sampling


def test_iwae_bound_is_a_stable_log_mean_exp():
  log_w_KxB = jnp.array([[-1000.0, 0.0], [-1001.0, 0.0], [-1002.0, 0.0]])
  want = [-1000 + np.log(np.mean(np.exp([0.0, -1.0, -2.0]))), 0.0]
  np.testing.assert_allclose(losses.iwae_bound(log_w_KxB), want, rtol=1e-6)
  # One sample: the bound is the log-weight itself (the ELBO's single-sample estimate).
  np.testing.assert_allclose(losses.iwae_bound(log_w_KxB[:1]), log_w_KxB[0])


def test_importance_sampled_log_likelihood_of_a_linear_gaussian_model():
  # p(z) = N(0, 1), p(x|z) = N(z, 1), so p(x) = N(0, 2) and the posterior is N(x/2, 1/2).
  x_B = jnp.array([-2.0, 0.0, 1.5])
  log_px_B = -0.5 * (np.log(2 * np.pi * 2.0) + np.asarray(x_B) ** 2 / 2.0)

  def log_w(z_KxB, q_mean_B, q_logvar_B):
    zeros = jnp.zeros_like(z_KxB)
    z = z_KxB[..., None]
    return (likelihood.diagonal_normal_log_prob(z, jnp.broadcast_to(x_B, z_KxB.shape)[..., None],
                                                zeros[..., None])
            + likelihood.diagonal_normal_log_prob(z, zeros[..., None], zeros[..., None])
            - likelihood.diagonal_normal_log_prob(
                z, jnp.broadcast_to(q_mean_B, z_KxB.shape)[..., None],
                jnp.broadcast_to(q_logvar_B, z_KxB.shape)[..., None]))

  eps_KxB = jax.random.normal(jax.random.key(0), (20000, 3))
  # The exact posterior as proposal: every weight equals p(x), whatever the samples.
  exact_mean, exact_logvar = x_B / 2, jnp.full(3, np.log(0.5))
  z = exact_mean[None] + jnp.exp(0.5 * exact_logvar)[None] * eps_KxB
  np.testing.assert_allclose(losses.iwae_bound(log_w(z, exact_mean, exact_logvar)[:5]),
                             log_px_B, rtol=1e-5)
  # The prior as proposal: a noisy estimate, but it converges to log p(x) with many samples,
  # and with one sample per example its mean is the (lower) ELBO.
  prior_mean, prior_logvar = jnp.zeros(3), jnp.zeros(3)
  w = log_w(eps_KxB, prior_mean, prior_logvar)
  np.testing.assert_allclose(losses.iwae_bound(w), log_px_B, atol=0.05)
  assert np.all(np.mean(w, axis=0) < log_px_B)


def test_largest_divisor_at_most():
  assert likelihood.largest_divisor_at_most(5000, 100) == 100
  assert likelihood.largest_divisor_at_most(101, 100) == 1
  assert likelihood.largest_divisor_at_most(30, 100) == 30


def test_vae_scores_on_real_images(mnist):
  from aejax import configs
  from aejax import models

  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = "vae", (16,), 4
  model = models.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)),
                      sampling.example_keys(jax.random.key(1), 0, 1))["params"]
  x = jnp.asarray(mnist[2][:64] > 127, jnp.float32)
  scores = jax.jit(lambda p, x, r: likelihood.vae_scores(p, x, r, model=model, k=50, chunk=10))(
      params, x, jax.random.key(2))
  for name in ("nll", "elbo", "rec", "kl"):
    assert scores[name].shape == (64,) and np.all(np.isfinite(scores[name])), name
  np.testing.assert_allclose(scores["elbo"], -(scores["rec"] + scores["kl"]), rtol=1e-6)
  assert np.all(scores["kl"] >= 0)
  # The 50-sample bound is tighter than the ELBO (on average over images: both are estimates).
  assert np.mean(scores["nll"]) < np.mean(-scores["elbo"])
