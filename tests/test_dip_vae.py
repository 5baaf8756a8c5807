"""DIP-VAE: the covariance and its penalty (losses.latent_covariance, losses.dip_penalty) against
numpy written from Kumar et al.'s eqs. 6-7, the family's objective on a real model's outputs,
pmap against one device, and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import losses
from aejax import objectives
from conftest import (assert_pmap_matches_one_device, posterior_streams, refusal,
                      run_on_4_devices)

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def _numpy_penalty(mean, logvar, dip_type, lambda_od, lambda_d):
  """Eq. 6 (I): Cov_p(x)[mu(x)]; eq. 7 (II): E_p(x)[Sigma(x)] + Cov_p(x)[mu(x)]; each penalised
  by lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2, in float64 loops."""
  cov = np.cov(mean.astype(np.float64), rowvar=False, bias=True)  # The batch's, 1/B.
  if dip_type == "ii":
    cov = cov + np.diag(np.mean(np.exp(logvar.astype(np.float64)), axis=0))
  z = len(cov)
  off = sum(cov[i, j] ** 2 for i in range(z) for j in range(z) if i != j)
  on = sum((cov[i, i] - 1) ** 2 for i in range(z))
  return lambda_od * off + lambda_d * on


def _penalty(mean, logvar, dip_type):
  return float(jax.jit(lambda m, lv: losses.dip_penalty(
      losses.latent_covariance(m, lv if dip_type == "ii" else None), 2.0, 7.0))(mean, logvar))


def _batch():
  """A batch whose means have a non-zero mean, so E[mu] E[mu]^T matters."""
  rng = np.random.default_rng(0)
  mean = rng.normal(0.5, 1.3, size=(9, 4)).astype(np.float32)
  logvar = rng.uniform(-2, 0.5, size=(9, 4)).astype(np.float32)
  return mean, logvar


def test_dip_vae_i_penalty_matches_numpy():
  """catches: lambda_od and lambda_d swapped in dip_penalty (the off-diagonal's and the
  diagonal's weights, 2 and 7 here); the covariance without E[mu] E[mu]^T subtracted."""
  mean, logvar = _batch()
  np.testing.assert_allclose(_penalty(mean, logvar, "i"),
                             _numpy_penalty(mean, logvar, "i", 2.0, 7.0), rtol=1e-5)


def test_dip_vae_ii_penalty_matches_numpy():
  """catches: the mean posterior variance E[diag(exp(logvar))] left out of DIP-VAE-II's
  covariance; exp(logvar / 2) (the standard deviation) added in its place."""
  mean, logvar = _batch()
  np.testing.assert_allclose(_penalty(mean, logvar, "ii"),
                             _numpy_penalty(mean, logvar, "ii", 2.0, 7.0), rtol=1e-5)


def _tiny(dip_type="i", lambda_od=3.0, lambda_d=5.0):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = "dip_vae", (16,), 3
  config.loss = "elbo"
  config.objective.update(dip_type=dip_type, dip_lambda_od=lambda_od, dip_lambda_d=lambda_d)
  return config


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_objective_is_negative_elbo_plus_the_batch_penalty(dip_type):
  """The family's training loss per example is -ELBO + the batch's penalty (disentanglement_lib:
  loss = rec + kl + dip regulariser, batch means), evaluation the VAE's -ELBO.
  catches: the variant ignored (DIP-VAE-I's covariance for 'ii'); the KL dropped from the loss."""
  config = _tiny(dip_type)
  model = families.create_model(config.model, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (6, 28, 28, 1))
  params = jax.jit(model.init)(jax.random.key(1), x, jax.random.key(2))["params"]
  hp = hparams.of(config)
  fn = jax.jit(lambda p, k, training: objectives.per_example(
      model, p, x, x, posterior_streams(k), config, hp, training=training,
      step=jnp.asarray(0) if training else None), static_argnums=2)
  m = fn(params, jax.random.key(3), True)
  out = jax.jit(lambda p, k: model.apply({"params": p}, x, k))(params, jax.random.key(3))
  mean, logvar = (np.asarray(out[k], np.float64) for k in ("mean", "logvar"))
  bce = -np.sum(np.asarray(x * jax.nn.log_sigmoid(out["logits"])
                           + (1 - x) * jax.nn.log_sigmoid(-out["logits"])), axis=(1, 2, 3))
  kl = 0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar, axis=1)
  penalty = _numpy_penalty(mean, logvar, dip_type, 3.0, 5.0)
  np.testing.assert_allclose(np.asarray(m["dip"]), np.full(6, penalty), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(m["loss"]), bce + kl + penalty, rtol=1e-4)
  m_eval = fn(params, jax.random.key(3), False)
  assert set(m_eval) == {"loss", "rec", "kl", "elbo"}
  np.testing.assert_allclose(np.asarray(m_eval["loss"]), bce + kl, rtol=1e-4)


@pytest.mark.parametrize("name,field,value,message", [
    ("dip_vae", "dip_type", "iii", "config.objective.dip_type='iii' is not a DIP-VAE variant; "
     "use 'i' (covariance of the encoder means) or 'ii' (of the aggregate posterior)"),
    ("dip_vae", "dip_lambda_od", -1.0, "config.objective.dip_lambda_od=-1.0 must be >= 0"),
    ("dip_vae", "beta", 4.0, "'dip_vae' adds its covariance penalty to the ELBO; leave "
     "config.objective.beta=1 and kl_warmup_steps=0"),
    ("dip_vae", "batch_size", 1, "config.batch_size must be >= 2 for 'dip_vae': the "
     "covariance is estimated from the batch"),
    ("vae", "dip_lambda_d", 0.0, "config.objective.dip_lambda_od=3.0 applies to model "
     "'dip_vae', not 'vae'; set it to 0.0"),
])
def test_validation_refuses_with_one_line(name, field, value, message):
  config = _tiny()
  config.model.name = name
  assert refusal(config, field, value) == message


def _pmap_matches_one_device():
  """Each device's loss is the penalty of the pooled moments, so every device's value is the
  whole batch's."""
  rng = np.random.default_rng(2)
  mean, logvar = (jnp.asarray(rng.normal(size=(8, 3)), jnp.float32) for _ in range(2))

  def loss(mean, logvar, axis_name=None):
    return losses.dip_penalty(losses.latent_covariance(mean, logvar, axis_name), 2.0, 7.0)

  per_device = assert_pmap_matches_one_device(loss, mean, logvar)
  np.testing.assert_allclose(per_device, np.full(4, loss(mean, logvar)), rtol=1e-5)


def test_pmap_over_4_devices_matches_one_device():
  """catches: the moments left per device (no pmean in losses.batch_mean)."""
  run_on_4_devices("import test_dip_vae as t; t._pmap_matches_one_device()")
