"""The objectives against closed forms and hand computations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import decoder_dists
from aejax import losses

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).

BERNOULLI = decoder_dists.DecoderDist("bernoulli")


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
  x = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]).reshape(2, 1, 3, 1)
  logits = jnp.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]).reshape(2, 1, 3, 1)
  mean = jnp.array([[0.5, -0.5], [0.0, 1.0]])
  logvar = jnp.array([[0.0, -1.0], [0.5, 0.0]])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  xn = np.asarray(x)
  rec = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(axis=(1, 2, 3))
  m, lv = np.asarray(mean), np.asarray(logvar)
  kl = 0.5 * (np.exp(lv) + m**2 - 1 - lv).sum(axis=1)
  out = losses.elbo_objective({"logits": logits, "mean": mean, "logvar": logvar},
                              -BERNOULLI.log_prob(logits, x))
  chex.assert_trees_all_close(out["rec"], rec, rtol=1e-5)
  chex.assert_trees_all_close(out["kl"], kl, rtol=1e-5)
  chex.assert_trees_all_close(out["elbo"], -(rec + kl), rtol=1e-5)
  chex.assert_trees_all_close(out["loss"], rec + kl, rtol=1e-5)


def test_elbo_of_uninformative_decoder_and_posterior_at_prior():
  # Logits 0 give p = 1/2 per pixel, posterior = prior gives KL 0: ELBO = -D log 2.
  d = 784
  rec = -BERNOULLI.log_prob(jnp.zeros((3, 28, 28, 1)), jnp.ones((3, 28, 28, 1)))
  out = losses.elbo_objective({"mean": jnp.zeros((3, 5)), "logvar": jnp.zeros((3, 5))}, rec)
  chex.assert_trees_all_close(out["elbo"], jnp.full(3, -d * np.log(2.0)), rtol=1e-6)


def test_ae_objective_sums_over_pixels_per_image():
  x = jnp.zeros((2, 2, 2, 1))
  logits = jnp.zeros((2, 2, 2, 1))  # sigmoid(0) = 0.5 everywhere.
  out = losses.ae_objective({"logits": logits}, x, "mse")
  chex.assert_trees_all_close(out["sq_err"], jnp.full(2, 4 * 0.25))
  chex.assert_trees_all_close(out["loss"], out["sq_err"])
  chex.assert_trees_all_close(losses.ae_objective({"logits": logits}, x, "bce")["loss"],
                              jnp.full(2, 4 * np.log(2.0)), rtol=1e-6)


def _mmd_double_loop(z, p):
  """The unbiased MMD^2 with the IMQ kernel, C = 2 * Z, written out pair by pair (float64)."""
  z, p = np.asarray(z, np.float64), np.asarray(p, np.float64)
  n, c = len(z), 2.0 * z.shape[1]
  k = lambda a, b: c / (c + np.sum((a - b) ** 2))
  zz = sum(k(z[i], z[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  pp = sum(k(p[i], p[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  zp = sum(k(z[i], p[j]) for i in range(n) for j in range(n)) / (n * n)
  return zz + pp - 2 * zp


def test_mmd_is_the_imq_u_statistic_of_a_double_loop():
  z = jax.random.normal(jax.random.key(0), (8, 3)) * 0.5 + 1.0
  p = jax.random.normal(jax.random.key(1), (8, 3))
  terms = losses.mmd_imq(z, p)
  assert terms.shape == (8,)
  np.testing.assert_allclose(float(jnp.mean(terms)), _mmd_double_loop(z, p), rtol=1e-5)
  # Unbiased: samples of one distribution give about zero, not the V-statistic's positive bias.
  np.testing.assert_allclose(float(jnp.mean(losses.mmd_imq(p, p))), _mmd_double_loop(p, p),
                             atol=1e-6)


def test_mmd_over_a_device_axis_is_the_whole_batch_statistic_and_gradient():
  # Four 'devices' of 2 examples each (vmap with an axis name runs the same collectives as pmap).
  z = jax.random.normal(jax.random.key(2), (8, 3)) + 0.3
  p = jax.random.normal(jax.random.key(3), (8, 3))
  split = lambda a: a.reshape(4, 2, 3)
  whole = losses.mmd_imq(z, p)
  per_device = jax.vmap(lambda a, b: losses.mmd_imq(a, b, "d"), axis_name="d")(split(z), split(p))
  chex.assert_trees_all_close(per_device.reshape(8), whole, rtol=1e-6)
  grad_whole = jax.grad(lambda a: jnp.mean(losses.mmd_imq(a, p)))(z)
  # pmap's train step averages the devices' gradients of their local means.
  local_grad = lambda a, b: jax.grad(lambda a: jnp.mean(losses.mmd_imq(a, b, "d")))(a)
  grad_split = jax.vmap(local_grad, axis_name="d")(split(z), split(p))
  # A device differentiates w.r.t. its own codes, through every device's terms (all_gather
  # transposes to a sum over devices): divided by the 4 devices, the whole batch's gradient.
  chex.assert_trees_all_close(grad_split.reshape(8, 3) / 4, grad_whole, rtol=1e-5, atol=1e-7)


def test_rae_code_and_parameter_l2():
  z = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, 0.0]])
  chex.assert_trees_all_close(losses.code_l2(z), jnp.array([(1 + 4 + 0.25) / 2, 9 / 2]))
  tree = {"a": {"kernel": jnp.array([[1.0, 2.0]]), "bias": jnp.array([-3.0])}}
  np.testing.assert_allclose(float(losses.params_l2(tree)), (1 + 4 + 9) / 2)


def test_jacobian_norm_of_linear_and_sigmoid_decoders_against_closed_forms():
  w_ZxD = np.asarray(jax.random.normal(jax.random.key(4), (3, 5)))
  b_D = np.asarray(jax.random.normal(jax.random.key(5), (5,)))
  z = jax.random.normal(jax.random.key(6), (4, 3))
  # A linear decoder's Jacobian is W itself, at every code.
  linear = losses.jacobian_sq_norm(lambda z_Z: z_Z @ w_ZxD + b_D, z)
  chex.assert_trees_all_close(linear, jnp.full(4, np.sum(w_ZxD ** 2)), rtol=1e-5)
  # sigmoid(z W + b): d out_d / d z_j = s_d (1 - s_d) W_jd.
  got = losses.jacobian_sq_norm(lambda z_Z: jax.nn.sigmoid(z_Z @ w_ZxD + b_D), z)
  s = 1 / (1 + np.exp(-(np.asarray(z, np.float64) @ w_ZxD + b_D)))
  want = [np.sum((w_ZxD * (s_b * (1 - s_b))[None, :]) ** 2) for s_b in s]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
