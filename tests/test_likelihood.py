"""The importance-sampled likelihood against closed forms and dense quadrature."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import likelihood
from aejax import losses
from aejax import hparams
from aejax import families
from aejax import optimizers
from aejax import sampling
from aejax import state
from aejax import train


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
    return (losses.log_normal_diag(z, jnp.broadcast_to(x_B, z_KxB.shape)[..., None],
                                                zeros[..., None])
            + losses.log_normal_diag(z, zeros[..., None], zeros[..., None])
            - losses.log_normal_diag(
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


def _trained_vae_2d(mnist, steps=300):
  """A VAE with a 2-D latent after `steps` Adam steps on real MNIST: a posterior far narrower
  than the prior, so importance sampling has real work to do."""
  config = configs.base()
  config.model.name, config.loss, config.input.binarize = "vae", "elbo", "threshold"
  config.model.hidden, config.model.latents = (32,), 2
  model = families.create_model(config.model, (28, 28, 1))
  tx = optimizers.create_optimizer(config)
  st = state.init_state(jax.random.key(0), (28, 28, 1), model=model, tx=tx)
  step = functools.partial(train.train_step, hp=hparams.of(config), model=model,
                           tx=optimizers.for_runs(config), config=config)
  images = jnp.asarray(mnist[0][:steps * 50]).reshape(steps, 50, 28, 28, 1)
  body = lambda s, ix: step(s, ix[1], jax.random.fold_in(jax.random.key(1), ix[0]))
  st, _ = jax.jit(lambda s, xs: jax.lax.scan(body, s, (jnp.arange(steps), xs)))(st, images)
  return model, st.params


def _log_px_by_quadrature(model, params, x_1xHxWxC, center_2, half_width, n):
  """log p(x) = log sum over an n x n grid of p(x|z) p(z) dz (a Riemann sum, which for a smooth,
  decaying integrand converges far faster than any Monte Carlo estimate)."""
  g = np.linspace(-half_width, half_width, n)
  z_Gx2 = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + np.asarray(center_2)[None]
  logits = model.apply({"params": params}, jnp.asarray(z_Gx2, jnp.float32), method="decode")
  xs = jnp.broadcast_to(x_1xHxWxC, logits.shape)
  log_joint_G = (-losses.bernoulli_nll(logits, xs)
                 + losses.log_normal_diag(jnp.asarray(z_Gx2), jnp.zeros((1, 2)), jnp.zeros((1, 2))))
  cell = (g[1] - g[0]) ** 2
  return float(jax.nn.logsumexp(log_joint_G)) + np.log(cell)


def test_importance_sampled_nll_of_a_2d_latent_vae_matches_quadrature(mnist):
  model, params = _trained_vae_2d(mnist)
  x_BxHxWxC = jnp.asarray(mnist[2][:8] > 127, jnp.float32)
  log_w_KxB = likelihood.importance_log_weights(
      model, params, x_BxHxWxC, x_BxHxWxC, sampling.example_keys(jax.random.key(3), 0, 8),
      5000, 1000)
  nll_B = np.asarray(-losses.iwae_bound(log_w_KxB))
  # Effective sample size of the weights: where q(z|x) covers the posterior, k = 5000 is enough.
  ess_B = np.asarray(jnp.exp(2 * jax.nn.logsumexp(log_w_KxB, 0)
                             - jax.nn.logsumexp(2 * log_w_KxB, 0)))
  mean_Bx2, logvar_Bx2 = model.apply({"params": params}, x_BxHxWxC, method="encode")
  checked = 0
  for b in range(8):
    sd = float(np.max(np.exp(0.5 * np.asarray(logvar_Bx2[b]))))
    x = x_BxHxWxC[b:b + 1]
    exact = -_log_px_by_quadrature(model, params, x, mean_Bx2[b], 12 * sd, 241)
    # Importance sampling underestimates log p(x) (Jensen), never overestimates it.
    assert nll_B[b] > exact - 0.1, (b, nll_B[b], exact)
    if ess_B[b] >= 1000:
      assert sd < 0.5  # A posterior far narrower than the prior: the weights do real work.
      # A wider, denser grid agrees: the quadrature has converged.
      wide = -_log_px_by_quadrature(model, params, x, mean_Bx2[b], 20 * sd, 321)
      assert abs(exact - wide) < 0.01, (exact, wide)
      assert abs(nll_B[b] - exact) < 0.1, (b, nll_B[b], exact)
      checked += 1
  assert checked >= 1, ess_B


def test_vae_scores_refuses_uint8_images_instead_of_returning_nan(mnist):
  """uint8 grey levels in the Bernoulli's log-likelihood are NaN; the estimator names the fix.
  catches: the dtype check dropped (the scores come back NaN, no error)."""
  from aejax.errors import UserError

  config = configs.base()
  config.model.name, config.loss = "vae", "elbo"
  config.model.hidden, config.model.latents = (16,), 2
  model = families.create_model(config.model, (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)),
                      sampling.example_keys(jax.random.key(1), 0, 1))["params"]
  images = jnp.asarray(mnist[2][:4])
  keys_B = sampling.example_keys(jax.random.key(2), 0, 4)
  with pytest.raises(UserError, match="uint8.*Restored.nll"):
    likelihood.vae_scores(model, params, images, keys_B, k=3, chunk=3)
  scores = likelihood.vae_scores(model, params, images / 255.0, keys_B, k=3, chunk=3)
  assert np.all(np.isfinite(scores["nll"]))
