"""The capacity-annealed beta-VAE: the schedule C(step) (losses.capacity) against
disentanglement_lib's anneal written in numpy, the family's objective on a real model's outputs
against numpy, and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import losses
from aejax import objectives
from conftest import posterior_streams, refusal

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


@pytest.mark.parametrize("step", [0, 1, 10, 15, 40])
def test_capacity_rises_linearly_to_c_max_and_stays(step):
  """C = min(c_max, c_max step / n) (disentanglement_lib's anneal); n = 0 is c_max at once.
  catches: C not clipped at c_max (it grows past it after n steps); the ramp's step / n
  inverted."""
  c_max, n = 25.0, 10.0
  got = jax.jit(losses.capacity)(jnp.int32(step), jnp.float32(c_max), jnp.float32(n))
  np.testing.assert_allclose(float(got), min(c_max, c_max * step / n), rtol=1e-6)
  at_once = jax.jit(losses.capacity)(jnp.int32(step), jnp.float32(c_max), jnp.float32(0))
  assert float(at_once) == c_max


def _tiny(gamma=7.0, c_max=30.0, steps=10):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = "annealed_vae", (16,), 3
  config.loss = "elbo"
  config.objective.update(capacity_gamma=gamma, capacity_max=c_max, capacity_steps=steps)
  return config


@pytest.mark.parametrize("step", [0, 4, 25])
def test_objective_is_reconstruction_plus_gamma_times_the_kls_distance_from_c(step):
  """The training loss per example is rec + gamma |mean KL of the batch - C(step)|
  (disentanglement_lib's AnnealedVAE: the batch's mean KL inside |.|); evaluation the VAE's
  -ELBO. At step 0 (C = 0) the batch's KL lies above C, at steps 4 and 25 (C = 12 and 30) below
  it, so the sign of KL - C matters.
  catches: |.| dropped (rec + gamma (KL - C) at steps 4 and 25); each example's own KL inside
  |.| instead of the batch's mean; the KL added to the loss besides gamma |KL - C|."""
  config = _tiny()
  model = families.create_model(config.model, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (6, 28, 28, 1))
  params = jax.jit(model.init)(jax.random.key(1), x, jax.random.key(2))["params"]
  hp = hparams.of(config)
  fn = jax.jit(lambda p, k, training: objectives.per_example(
      model, p, x, x, posterior_streams(k), config, hp, training=training,
      step=jnp.int32(step) if training else None), static_argnums=2)
  m = fn(params, jax.random.key(3), True)
  out = jax.jit(lambda p, k: model.apply({"params": p}, x, k))(params, jax.random.key(3))
  mean, logvar = (np.asarray(out[k], np.float64) for k in ("mean", "logvar"))
  logits = np.asarray(out["logits"], np.float64)
  x64 = np.asarray(x, np.float64)
  log_sig = lambda a: -np.logaddexp(0.0, -a)
  bce = -np.sum(x64 * log_sig(logits) + (1 - x64) * log_sig(-logits), axis=(1, 2, 3))
  kl = 0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar, axis=1)
  c = min(30.0, 30.0 * step / 10)
  assert (kl.mean() > c) == (step == 0), (kl.mean(), c)  # Both signs of KL - C are seen.
  np.testing.assert_allclose(np.asarray(m["capacity"]), np.full(6, c), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(m["loss"]), bce + 7.0 * abs(kl.mean() - c), rtol=1e-4)
  m_eval = fn(params, jax.random.key(3), False)
  assert set(m_eval) == {"loss", "rec", "kl", "elbo"}
  np.testing.assert_allclose(np.asarray(m_eval["loss"]), bce + kl, rtol=1e-4)


@pytest.mark.parametrize("name,field,value,message", [
    ("annealed_vae", "capacity_gamma", -1.0, "config.objective.capacity_gamma=-1.0 must be >= 0"),
    ("annealed_vae", "capacity_steps", -5, "config.objective.capacity_steps=-5 must be >= 0"),
    ("annealed_vae", "beta", 4.0, "'annealed_vae' weighs the KL by config.objective."
     "capacity_gamma towards capacity_max; leave config.objective.beta=1 and kl_warmup_steps=0"),
    ("vae", "capacity_max", 0.0, "config.objective.capacity_gamma=7.0 applies to model "
     "'annealed_vae', not 'vae'; set it to 0.0"),
])
def test_validation_refuses_with_one_line(name, field, value, message):
  config = _tiny()
  config.model.name = name
  assert refusal(config, field, value) == message
