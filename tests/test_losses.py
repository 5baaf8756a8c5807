"""The objectives against closed forms and hand computations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses


def test_kl_of_identical_gaussians_is_zero():
  mean = jax.random.normal(jax.random.key(0), (4, 20))
  logvar = jax.random.normal(jax.random.key(1), (4, 20))
  chex.assert_trees_all_close(losses.gaussian_kl(mean, logvar, mean, logvar), jnp.zeros(4),
                              atol=1e-6)


def test_kl_closed_form_values():
  # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2 per dimension.
  mean = jnp.array([[1.0, 0.0, -2.0]])
  logvar = jnp.array([[0.0, jnp.log(4.0), 0.0]])
  expected = 0.5 * ((1 + 1 - 1 - 0) + (4 + 0 - 1 - np.log(4.0)) + (1 + 4 - 1 - 0))
  chex.assert_trees_all_close(losses.kl_to_standard_normal(mean, logvar), jnp.array([expected]),
                              rtol=1e-6)
  # Against a non-standard p: KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2.
  kl = losses.gaussian_kl(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1)),
                          jnp.full((1, 1), jnp.log(4.0)))
  chex.assert_trees_all_close(kl, jnp.array([np.log(2.0) + 2 / 8 - 0.5]), rtol=1e-6)


def test_elbo_on_a_tiny_case_equals_the_hand_computed_value():
  # Two images of three pixels, a 2-D code; every term computed by hand in numpy.
  x = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
  logits = jnp.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
  mean = jnp.array([[0.5, -0.5], [0.0, 1.0]])
  logvar = jnp.array([[0.0, -1.0], [0.5, 0.0]])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  xn = np.asarray(x)
  rec = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(axis=1)
  m, lv = np.asarray(mean), np.asarray(logvar)
  kl = 0.5 * (np.exp(lv) + m**2 - 1 - lv).sum(axis=1)
  out = losses.elbo_objective({"logits": logits, "mean": mean, "logvar": logvar}, x)
  chex.assert_trees_all_close(out["rec"], rec, rtol=1e-5)
  chex.assert_trees_all_close(out["kl"], kl, rtol=1e-5)
  chex.assert_trees_all_close(out["elbo"], -(rec + kl), rtol=1e-5)
  chex.assert_trees_all_close(out["loss"], rec + kl, rtol=1e-5)


def test_elbo_of_uninformative_decoder_and_posterior_at_prior():
  # Logits 0 give p = 1/2 per pixel, posterior = prior gives KL 0: ELBO = -D log 2.
  d = 784
  out = losses.elbo_objective({"logits": jnp.zeros((3, 28, 28, 1)), "mean": jnp.zeros((3, 5)),
                               "logvar": jnp.zeros((3, 5))}, jnp.ones((3, 28, 28, 1)))
  chex.assert_trees_all_close(out["elbo"], jnp.full(3, -d * np.log(2.0)), rtol=1e-6)


def test_ae_objective_sums_over_pixels_per_image():
  x = jnp.zeros((2, 2, 2, 1))
  logits = jnp.zeros((2, 2, 2, 1))  # sigmoid(0) = 0.5 everywhere.
  out = losses.ae_objective({"logits": logits}, x, "mse")
  chex.assert_trees_all_close(out["sq_err"], jnp.full(2, 4 * 0.25))
  chex.assert_trees_all_close(out["loss"], out["sq_err"])
  chex.assert_trees_all_close(losses.ae_objective({"logits": logits}, x, "bce")["loss"],
                              jnp.full(2, 4 * np.log(2.0)), rtol=1e-6)
