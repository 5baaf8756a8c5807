"""The bounds of Rainforth et al. (2018), MIWAE, PIWAE and CIWAE: their values against numpy on
fixed log weights, the VAE's objective against the same formulas on log weights computed apart
(scipy's densities at the estimator's samples), PIWAE's split gradients, validation, and one
short MNIST run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import likelihood
from aejax import losses
from aejax import objectives
from aejax import sampling
from aejax import validation
from aejax.errors import UserError
from aejax.families import shared
from conftest import posterior_streams
from test_zoo import constant_model_scores

# Fixed log weights [M=3, K=4, B=2], small enough for exp in float64.
LOG_W_MxKxB = np.array([[[-1.0, -4.0], [-2.5, -3.0], [0.5, -6.0], [-3.0, -2.0]],
                        [[-0.2, -5.5], [-1.7, -1.0], [-2.2, -4.4], [0.3, -3.3]],
                        [[-4.0, -0.5], [-1.1, -2.8], [-0.6, -1.9], [-2.0, -7.0]]])


def _log_mean_exp(a, axis):
  return np.log(np.mean(np.exp(a), axis=axis))


def _miwae(log_w_MxKxB):
  return np.mean(_log_mean_exp(log_w_MxKxB, 1), axis=0)


def _ciwae(log_w_KxB, beta):
  return beta * np.mean(log_w_KxB, axis=0) + (1 - beta) * _log_mean_exp(log_w_KxB, 0)


@pytest.mark.quick
def test_bounds_against_numpy_on_fixed_log_weights():
  miwae = losses.miwae_bound(jnp.asarray(LOG_W_MxKxB, jnp.float32))
  np.testing.assert_allclose(miwae, _miwae(LOG_W_MxKxB), rtol=1e-6)
  # By hand for example 0, bound 0: log((e^-1 + e^-2.5 + e^0.5 + e^-3) / 4).
  np.testing.assert_allclose(np.log((np.exp(-1) + np.exp(-2.5) + np.exp(0.5) + np.exp(-3)) / 4),
                             _log_mean_exp(LOG_W_MxKxB[0], 0)[0], rtol=1e-12)
  log_w_KxB = LOG_W_MxKxB.reshape(12, 2)
  for beta in (0.0, 0.05, 0.5, 1.0):
    got = losses.ciwae_bound(jnp.asarray(log_w_KxB, jnp.float32), jnp.float32(beta))
    np.testing.assert_allclose(got, _ciwae(log_w_KxB, beta), rtol=1e-6)
  # The ordering the paper's bounds must have on any weights, ELBO <= MIWAE(3, 4) <= IWAE(12), of
  # the code's bounds (catches: iwae_bound as the mean log weight, miwae_bound's mean over M
  # taken inside the log).
  iwae = losses.iwae_bound(jnp.asarray(log_w_KxB, jnp.float32))
  np.testing.assert_allclose(iwae, _log_mean_exp(log_w_KxB, 0), rtol=1e-6)
  assert np.all(np.mean(log_w_KxB, axis=0) < miwae) and np.all(miwae < iwae), (miwae, iwae)


def _config(loss, k, m=1, beta=0.0):
  config = configs.base()
  config.model.name, config.loss, config.input.binarize = "vae", loss, "dynamic"
  config.model.hidden, config.model.latents = (16,), 3
  config.model.activation = "tanh"
  config.model.num_samples, config.model.num_bounds = k, m
  config.objective.ciwae_beta = beta
  return config


def _numpy_log_weights(model, params, x, stream, n):
  """[N, B] log p(x|z) + log p(z) - log q(z|x) in float64 with scipy's densities, at the samples
  the estimator draws: draw j is a standard normal from fold_in(key, j), of the whole batch's
  shape [B, Z] from one key, or of [Z] from fold_in(keys_B[b], j) for example b; only the
  networks' outputs (encode, decode) come from the model."""
  v = {"params": params}
  mean_BxZ, logvar_BxZ = (np.asarray(a, np.float64) for a in model.apply(v, x, method="encode"))
  fold = lambda key, j: jax.random.fold_in(key, j)
  if stream.key.ndim:
    draw = lambda key, j: jax.random.normal(fold(key, j), (mean_BxZ.shape[1],))
    eps_NxBxZ = jax.vmap(jax.vmap(draw, (0, None)), (None, 0))(stream.key, jnp.arange(n))
  else:
    eps_NxBxZ = jax.vmap(lambda j: jax.random.normal(fold(stream.key, j), mean_BxZ.shape))(
        jnp.arange(n))
  eps_NxBxZ = np.asarray(eps_NxBxZ, np.float64)
  std_BxZ = np.exp(0.5 * logvar_BxZ)
  z_NxBxZ = mean_BxZ + std_BxZ * eps_NxBxZ
  logits = np.asarray(model.apply(v, jnp.asarray(z_NxBxZ.reshape(-1, z_NxBxZ.shape[-1]),
                                                 jnp.float32), method="decode"), np.float64)
  logits = logits.reshape(n, *x.shape)
  x64 = np.asarray(x, np.float64)[None]
  log_px_NxB = (x64 * special.log_expit(logits) + (1 - x64) * special.log_expit(-logits)).reshape(
      n, x.shape[0], -1).sum(-1)
  log_pz_NxB = stats.norm.logpdf(z_NxBxZ).sum(-1)
  log_qz_NxB = stats.norm.logpdf(z_NxBxZ, mean_BxZ, std_BxZ).sum(-1)
  return log_px_NxB + log_pz_NxB - log_qz_NxB


def _setup(config, n=5, per_example=True):
  model = families.create_model(config.model, (28, 28, 1))
  x = (jax.random.uniform(jax.random.key(0), (n, 28, 28, 1)) > 0.5).astype(jnp.float32)
  params = jax.jit(model.init)(jax.random.key(1), x, jax.random.key(2))["params"]
  keys_B = (sampling.example_keys(jax.random.key(3), 0, n) if per_example
            else sampling.Stream(jax.random.key(3)))
  return model, params, x, keys_B


@pytest.mark.quick
@pytest.mark.parametrize("per_example", [True, False], ids=["example_keys", "one_key"])
@pytest.mark.parametrize("loss,k,m,beta", [("miwae", 3, 4, 0.0), ("piwae", 3, 4, 0.0),
                                           ("ciwae", 6, 1, 0.3)])
def test_the_objective_scores_the_estimators_samples_by_the_papers_formulas(loss, k, m, beta,
                                                                             per_example):
  """The bounds the objective computes equal the papers' formulas on log weights computed apart,
  and come in the order ELBO <= MIWAE <= IWAE (catches: log p(z) left out of the log weights,
  a sample drawn with the variance for the standard deviation, the samples drawn from another
  key than the stream folded with the sample's index, a bound's log-mean-exp replaced by a mean)."""
  config = _config(loss, k, m, beta)
  validation.validate_config(config, 1)
  model, params, x, keys_B = _setup(config, per_example=per_example)
  log_w_NxB = _numpy_log_weights(model, params, x, keys_B, m * k)
  shift_B = log_w_NxB.max(0)  # Log weights of a random network: hundreds of nats below 0.
  iwae = _log_mean_exp(log_w_NxB - shift_B, 0) + shift_B
  log_w_MxKxB = log_w_NxB.reshape(m, k, -1)
  shift_MxB = log_w_MxKxB.max(1)
  miwae = _miwae(log_w_MxKxB - shift_MxB[:, None]) + shift_MxB.mean(0)
  want = {"miwae": -miwae, "piwae": -iwae,
          "ciwae": -(_ciwae(log_w_NxB - shift_B, beta) + shift_B)}[loss]
  # Training and evaluation differ for PIWAE only (training computes both sets of weights).
  for training in (True, False) if loss == "piwae" else (True,):
    got = jax.jit(lambda p, t=training: objectives.per_example(
        model, p, x, x, posterior_streams(keys_B), config, hparams.of(config),
        training=t, step=jnp.asarray(0)))(params)
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(got["iwae_bound"], iwae, rtol=1e-5)
    np.testing.assert_allclose(got["elbo"], log_w_NxB.mean(0), rtol=1e-5)
    if loss != "ciwae":
      np.testing.assert_allclose(got["miwae_bound"], miwae, rtol=1e-5)
      assert np.all(got["elbo"] < got["miwae_bound"]), got
      assert np.all(got["miwae_bound"] < got["iwae_bound"]), got


@pytest.mark.quick
@pytest.mark.parametrize("name", ["vae", "vamp"])
def test_piwae_trains_the_decoder_on_iwae_of_all_samples_and_the_encoder_on_miwae(name):
  """The split is by parameters (Rainforth et al.: theta climbs IWAE, phi MIWAE): the VampPrior's
  pseudo-inputs are the generative model's, and the encoder, which the prior shares, climbs
  MIWAE through every pass of it, the prior's included. Against jax.grad of each whole bound.
  catches: the pseudo-inputs counted as the inference network's (in INFERENCE), or the
  encoder's gradient taken from IWAE."""
  k, m = 3, 4
  config = _config("piwae", k, m)
  if name == "vamp":
    config.model.name, config.model.num_pseudo = "vamp", 3
  model, params, x, keys_B = _setup(config)
  hp = hparams.of(config)
  mean_loss = lambda p: jnp.mean(shared.bound_metrics(
      model, p, x, x, posterior_streams(keys_B), config, hp, True)["loss"])
  got = jax.jit(jax.grad(mean_loss))(params)
  log_w = lambda p: likelihood.importance_log_weights(model, p, x, x, keys_B, m * k, m * k)
  iwae_grad = jax.jit(jax.grad(lambda p: -jnp.mean(losses.iwae_bound(log_w(p)))))(params)
  miwae_grad = jax.jit(jax.grad(lambda p: -jnp.mean(losses.miwae_bound(
      log_w(p).reshape(m, k, -1)))))(params)
  generative = ["decoder"] + (["pseudo_inputs"] if name == "vamp" else [])
  assert sorted(params) == sorted(generative + ["encoder"])
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for part in generative:
    jax.tree.map(close, got[part], iwae_grad[part])
  jax.tree.map(close, got["encoder"], miwae_grad["encoder"])
  # The two targets pull the encoder differently here, so the test tells them apart.
  enc = lambda g: np.concatenate([np.ravel(v) for v in jax.tree.leaves(g["encoder"])])
  assert np.abs(enc(iwae_grad) - enc(miwae_grad)).max() > 1e-3 * np.abs(enc(miwae_grad)).max()


@pytest.mark.quick
@pytest.mark.parametrize("name,loss,fields,message", [
    ("ae", "miwae", {}, "config.loss='miwae' does not fit config.model.name='ae'; use one of "
     "('mse', 'bce')"),
    ("ae", "mse", {"model.num_bounds": 2},
     "config.model.num_bounds=2 applies to models 'vae', 'vamp' and 'flow_vae', not 'ae'; set it "
     "to 1"),
    ("wae", "mse", {"objective.ciwae_beta": 0.5},
     "config.objective.ciwae_beta=0.5 applies to models 'vae', 'vamp' and 'flow_vae', not 'wae'; "
     "set it to 0.0"),
    ("vae", "iwae", {"model.num_bounds": 2}, "config.model.num_bounds=2 is the M of MIWAE and "
     "PIWAE: use > 1 only with config.loss='miwae' or 'piwae'"),
    ("vae", "elbo", {"model.num_samples": 8}, "config.model.num_samples=8 is the K of a "
     "multi-sample bound: use > 1 only with a bound, not config.loss='elbo'"),
    ("vae", "miwae", {"model.num_bounds": 0}, "config.model.num_bounds=0 must be >= 1"),
    ("vae", "piwae", {"model.num_samples": 0}, "config.model.num_samples=0 must be >= 1"),
    ("vae", "ciwae", {"objective.ciwae_beta": 1.5},
     "config.objective.ciwae_beta=1.5 must be in [0, 1]"),
    ("vae", "miwae", {"objective.ciwae_beta": 0.5}, "config.objective.ciwae_beta=0.5 weighs the "
     "ELBO in config.loss='ciwae' only; set it to 0.0"),
    ("vae", "piwae", {"objective.kl_warmup_steps": 100}, "the PIWAE bound has no KL weight; "
     "leave config.objective.beta=1 and kl_warmup_steps=0"),
    ("vae", "ciwae", {"objective.beta": 0.5}, "the CIWAE bound has no KL weight; leave "
     "config.objective.beta=1 and kl_warmup_steps=0"),
])
def test_validation_refuses_with_one_line(name, loss, fields, message):
  config = _config("elbo", 1)
  config.model.name, config.loss = name, loss
  for path, value in fields.items():
    section, leaf = path.split(".")
    config[section][leaf] = value
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  assert str(e.value) == message


def test_miwae_learns_on_mnist(data_dir, mnist, tmp_path):
  """MIWAE(2, 2) on a tenth of MNIST, one epoch of 60 steps (measured: 0.78x): its test bound beats the NLL of
  the best input-blind model (every pixel its training mean)."""
  from aejax import train

  config = _config("miwae", 2, 2)
  config.model.hidden, config.model.latents, config.model.activation = (64,), 8, "relu"
  config.input.train_split, config.input.test_split = "train[:10%]", "test[:10%]"
  config.batch_size, config.num_epochs, config.learning_rate = 100, 1, 1e-2
  train.train_and_evaluate(config, str(tmp_path), data_dir=data_dir)
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    test = [json.loads(line) for line in f if '"test"' in line][-1]
  train_x, train_y, test_x, test_y = mnist  # The same tenths (TFDS slices keep the order).
  _, nll = constant_model_scores((train_x[:6000], train_y[:6000], test_x[:1000], test_y[:1000]),
                                 None, "dynamic")
  assert -test["miwae_bound"] < 0.9 * nll, (test, nll)
  assert test["elbo"] <= test["miwae_bound"] <= test["iwae_bound"], test
