"""Normalizing-flow posteriors: each flow's log-determinant against jnp.linalg.slogdet of its
jax.jacfwd Jacobian, MADE's autoregressive property, the flow VAE's log q(z|x) as a normalised
density (E_q[p(z) / q(z)] = 1 for a normalised p), its ELBO against numpy, and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import objectives
from aejax import sampling
from aejax.models import flows
from conftest import posterior_streams

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def _slogdet_of_jacobian(f, z_Z):
  return jnp.linalg.slogdet(jax.jacfwd(f)(z_Z))[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planar_log_det_is_the_jacobians(seed):
  """log |det| of planar steps at random points and parameters, w.u both above and below -1
  (where u' differs from u), against slogdet of the Jacobian; and w.u' >= -1 (invertible).
  catches: the log-det taken with u in place of u'; psi without tanh's derivative."""
  k = jax.random.split(jax.random.key(seed), 4)
  z_Z, u_Z, w_Z = (3 * jax.random.normal(k[i], (4,)) for i in range(3))
  b = jax.random.normal(k[3], ())
  for u in (u_Z, -u_Z):
    f = lambda z: flows.planar(z, u, w_Z, b)[0]
    np.testing.assert_allclose(flows.planar(z_Z, u, w_Z, b)[1], _slogdet_of_jacobian(f, z_Z),
                               rtol=1e-4, atol=1e-5)
  wu = float(jnp.dot(w_Z, -u_Z * jnp.sign(jnp.dot(w_Z, u_Z))))  # The negative one of the two.
  assert wu < -1, wu  # The constraint is exercised.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_radial_log_det_is_the_jacobians(seed):
  """log |det| of radial steps (contracting and expanding beta) against slogdet of the Jacobian.
  catches: the (Z - 1) power taken as Z; h' with the wrong sign."""
  k = jax.random.split(jax.random.key(seed), 4)
  z_Z, z0_Z = jax.random.normal(k[0], (5,)), jax.random.normal(k[1], (5,))
  alpha_raw = jax.random.normal(k[2], ())
  for beta_raw in (jnp.float32(-3.0), jnp.float32(2.5)):
    f = lambda z: flows.radial(z, z0_Z, alpha_raw, beta_raw)[0]
    np.testing.assert_allclose(flows.radial(z_Z, z0_Z, alpha_raw, beta_raw)[1],
                               _slogdet_of_jacobian(f, z_Z), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hidden,reverse", [((), False), ((12, 12), False), ((12,), True)])
def test_made_is_autoregressive_and_the_iaf_log_det_is_the_jacobians(hidden, reverse):
  """The MADE's outputs m_d and s_d depend on z_1..z_{d-1} only (in the step's order), so the
  IAF step's Jacobian is triangular with sigma on its diagonal, and its log-det is sum log sigma.
  catches: the output mask's > as >= (m_d sees z_d); the order left unreversed."""
  z = 5
  step = flows.IAFStep(z, hidden, reverse=reverse)
  x_Z = jax.random.normal(jax.random.key(0), (z,))
  h = jax.random.normal(jax.random.key(1), (hidden[0],)) if hidden else None
  params = step.init(jax.random.key(2), x_Z, h)
  # Non-zero weights everywhere, so a dependence the masks allow shows in the Jacobian.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(3), p.shape), params)
  f = lambda x: step.apply(params, x, h)[0]
  jac_ZxZ = np.asarray(jax.jacfwd(f)(x_Z))
  order = np.arange(z)[::-1] if reverse else np.arange(z)
  jac_in_order = jac_ZxZ[np.ix_(order, order)]
  off = jac_in_order - np.diag(np.diag(jac_in_order))
  assert np.all(np.triu(off) == 0), jac_in_order  # Strictly lower triangular off the diagonal,
  assert np.count_nonzero(np.tril(off, -1)) > 0  # and not trivially so.
  np.testing.assert_allclose(step.apply(params, x_Z, h)[1], _slogdet_of_jacobian(f, x_Z),
                             rtol=1e-4, atol=1e-5)


def _tiny(flow, length=2, hidden=()):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = "flow_vae", (16,), 2
  config.model.flow, config.model.flow_length, config.model.flow_hidden = flow, length, hidden
  config.loss = "elbo"
  return config


@pytest.mark.parametrize("flow,hidden", [("planar", ()), ("radial", ()), ("iaf", (8,))])
def test_the_posterior_density_is_normalised(flow, hidden):
  """E_{z ~ q(z|x)} [p(z) / q(z|x)] = 1 for any normalised density p: here N(0, 0.3^2 I), narrower
  than q so the ratio has finite variance, over 200,000 draws of the model's own sample z_L and
  its log q(z_L|x) = log q_0(z_0|x) - sum log |det|, for one image (2 latents).
  catches: the log-determinants added to log q instead of subtracted (the mean is then far from 1)."""
  config = _tiny(flow, hidden=hidden)
  model = families.create_model(config.model, (4, 4, 1))
  x = jnp.broadcast_to(jax.random.uniform(jax.random.key(0), (1, 4, 4, 1)), (200_000, 4, 4, 1))
  params = model.init(jax.random.key(1), x[:2], jax.random.key(2))["params"]
  out = jax.jit(lambda p, k: model.apply({"params": p}, x, k))(params, jax.random.key(3))
  z, log_q = np.asarray(out["z"], np.float64), np.asarray(out["log_q"], np.float64)
  assert np.ptp(np.asarray(out["logvar"]), axis=0).max() < 1e-6  # One image: one q.
  log_p = -0.5 * np.sum(np.square(z / 0.3), 1) - 2 * np.log(0.3) - np.log(2 * np.pi)
  ratio = np.exp(log_p - log_q)
  mean, err = ratio.mean(), ratio.std() / np.sqrt(len(ratio))
  assert abs(mean - 1) < max(4 * err, 0.01), (mean, err)


@pytest.mark.parametrize("flow,hidden", [("planar", ()), ("radial", ()), ("iaf", (8, 8))])
def test_log_weights_and_the_elbo_take_the_flow(flow, hidden):
  """The one NLL estimator's log weight log p(x|z_L) + log p(z_L) - log q(z_L|x) at given draws
  against numpy, with log q(z_L|x) = log q_0(z_0|x) - slogdet of the whole flow's Jacobian at z_0
  (jax.jacfwd, not the flows' own log-dets); and the training loss (the single-sample ELBO's
  negative) at the same draws equal to minus that log weight.
  catches: the prior scored at z_0 instead of z_L; a step's log-det dropped from log q."""
  config = _tiny(flow, length=3, hidden=hidden)
  model = families.create_model(config.model, (28, 28, 1))
  x = (jax.random.uniform(jax.random.key(0), (4, 28, 28, 1)) > 0.5).astype(jnp.float32)
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  apply = lambda *a, **k: model.apply({"params": params}, *a, **k)
  post = apply(x, method="posterior")
  stream = sampling.as_stream(jax.random.key(3))
  eps_BxZ = sampling.normal(stream, (4, 2))  # The training sample's draws (FlowVAE.__call__).
  log_w = np.asarray(apply(post, eps_BxZ[None], x, method="log_weights")[0], np.float64)

  mean, logvar, flow_params = (np.asarray(a, np.float64) for a in post)
  z0 = mean + np.exp(0.5 * logvar) * np.asarray(eps_BxZ, np.float64)
  want = []
  for b in range(4):
    f = lambda z: apply(z[None, None], post[2][b:b + 1], method="flow_through")[0][0, 0]
    z0_b = jnp.asarray(z0[b], jnp.float32)
    z_l = np.asarray(f(z0_b), np.float64)
    log_det = float(jnp.linalg.slogdet(jax.jacfwd(f)(z0_b))[1])
    log_q0 = -0.5 * np.sum((z0[b] - mean[b]) ** 2 / np.exp(logvar[b]) + logvar[b] + np.log(2 * np.pi))
    logits = np.asarray(apply(jnp.asarray(z_l[None], jnp.float32), method="decode"), np.float64)
    log_px = np.sum(x[b] * -np.logaddexp(0, -logits[0]) + (1 - x[b]) * -np.logaddexp(0, logits[0]))
    log_prior = -0.5 * np.sum(z_l ** 2) - np.log(2 * np.pi)
    want.append(log_px + log_prior - (log_q0 - log_det))
  del flow_params
  np.testing.assert_allclose(log_w, want, rtol=1e-4, atol=1e-3)
  hp = hparams.of(config)
  m = jax.jit(lambda p: objectives.per_example(
      model, p, x, x, posterior_streams(stream), config, hp, training=True,
      step=jnp.int32(0)))(params)
  np.testing.assert_allclose(np.asarray(m["loss"]), -log_w, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name,field,value,message", [
    ("flow_vae", "flow_length", 0, "config.model.flow_length=0 must be >= 1: the number of "
     "planar steps"),
    ("flow_vae", "flow", "sylvester", "config.model.flow='sylvester' must be one of ('planar', "
     "'radial', 'iaf') for 'flow_vae'"),
    ("flow_vae", "flow_hidden", (8,), "config.model.flow_hidden=(8,) sets IAF's MADE widths; "
     "leave it () with config.model.flow='planar'"),
    ("ae", "flow", "planar", "config.model.flow='planar' applies to model 'flow_vae', not 'ae'; "
     "set it to 'none'"),
])
def test_validation_refuses_with_one_line(name, field, value, message):
  config = _tiny("planar")
  config.model.name = name
  if name == "ae":
    config.loss, config.model.flow_length = "mse", 0
  config.model[field] = value
  from aejax import validation
  from aejax.errors import UserError
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  assert str(e.value) == message
