"""The VAE with two stochastic layers ('hvae'): its log weight against numpy, its NLL estimate
against exact quadrature, its validation, and one short real-MNIST IWAE run shared by the
end-to-end checks (it learns, a 4-device mesh trains as one device does, analyze / restore /
compare work), plus a vectorised group of two seeds against the runs alone."""

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
from aejax import objectives
from aejax import sampling
from aejax import validation
from aejax.analysis import restored
from aejax.configs import load_experiment
from aejax.errors import UserError
from conftest import (REPO, posterior_streams, quick_compile, run_aejax, saved_state,
                      start_on_4_devices)
from test_vectorize import _assert_group_is_runs_alone, _two_runs

# One short run: a tenth of each split, one epoch of 300 steps of 20, k = 5, test NLL k = 50.
# 128 units before the pixels: at the file's rate of 1e-3 Adam moves each weight by about the
# rate per step, and the background pixels' logits must fall from 0 within these 300 steps
# (with 32 units the test NLL stays above the constant model's). A faster rate would do it too,
# but then float rounding of the all-reduce grows over the steps past the 4-device check's
# tolerance.
SPLITS = ("train[:10%]", "test[:10%]")
EXPERIMENT = "experiments/burda2015_iwae_2layer_k50.py"
RUN = {"model.hidden": (128,), "model.latents": 8, "model.hidden2": (16,),
       "model.latents2": 4, "model.num_samples": 5, "opt.stages": 1, "num_epochs": 1,
       "eval_num_samples": 50, "input.train_split": SPLITS[0], "input.test_split": SPLITS[1]}
K_ANALYZE = 50


def _set(config, fields):
  config.update_from_flattened_dict(fields)
  return config


def _tiny(latents=3, latents2=2, loss="elbo", **fields):
  config = configs.base()
  _set(config, {"model.name": "hvae", "model.hidden": (5,), "model.latents": latents,
                "model.hidden2": (4,), "model.latents2": latents2, "model.activation": "tanh",
                "loss": loss, **fields})
  return config


def _init(config, image_shape, seed=1):
  model = families.create_model(config.model, image_shape)
  x = jnp.zeros((1, *image_shape))
  # Jitted: eager init dispatches the networks op by op, which costs seconds more to compile.
  return model, jax.jit(model.init)(jax.random.key(seed), x, jax.random.key(0))["params"]


# --- An independent numpy model: the networks as explicit tanh MLPs in float64, the densities
# from scipy.

def _mlp(p, h):
  layers = sorted(p, key=lambda name: int(name.split("_")[1]))
  for i, name in enumerate(layers):
    h = h @ np.asarray(p[name]["kernel"], np.float64) + np.asarray(p[name]["bias"], np.float64)
    h = np.tanh(h) if i < len(layers) - 1 else h
  return h


def _gaussian(p, h):
  out = _mlp(p, h)
  half = out.shape[-1] // 2
  return out[..., :half], np.exp(0.5 * out[..., half:])  # Mean and standard deviation.


def _log_bernoulli(p_dec, z1, x_D):
  logits = _mlp(p_dec, z1)
  return np.sum(x_D * special.log_expit(logits) + (1 - x_D) * special.log_expit(-logits), -1)


def _numpy_log_weights(params, x_BxD, eps_KxBxE, latents):
  """log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1), [K, B]."""
  x_BxD = np.asarray(x_BxD, np.float64)
  mean1, sd1 = _gaussian(params["encoder"], x_BxD)
  z1 = mean1[None] + sd1[None] * eps_KxBxE[..., :latents]
  mean2, sd2 = _gaussian(params["encoder2"], z1)
  z2 = mean2 + sd2 * eps_KxBxE[..., latents:]
  p_mean1, p_sd1 = _gaussian(params["decoder2"], z2)
  norm = lambda z, m, s: np.sum(stats.norm.logpdf(z, m, s), -1)
  return (_log_bernoulli(params["decoder"], z1, x_BxD[None]) + norm(z1, p_mean1, p_sd1)
          + norm(z2, 0, 1) - norm(z1, mean1[None], sd1[None]) - norm(z2, mean2, sd2))


def _wide(p_net):
  """The Gaussian head of a network scaled to a mean near 0 and a standard deviation near 2.5."""
  last = max(p_net, key=lambda name: int(name.split("_")[1]))
  half = p_net[last]["bias"].shape[0] // 2
  bias = jnp.concatenate([jnp.zeros(half), jnp.full(half, 2 * np.log(2.5))])
  return {**p_net, last: {"kernel": 0.1 * p_net[last]["kernel"], "bias": bias}}


def _draws(keys_B, k, size):
  """The standard-normal draws aejax.likelihood gives sample j of example b, [K, B, E]."""
  return np.stack([[np.asarray(jax.random.normal(jax.random.fold_in(key, j), (size,)))
                    for key in keys_B.key] for j in range(k)]).astype(np.float64)


def _per_example(model, params, x, keys_B, config, step=0):
  step = None if step is None else jnp.asarray(step)
  fn = lambda p, x, s: objectives.per_example(model, p, x, x, s, config, hparams.of(config),
                                              training=step is not None, step=step)
  return jax.jit(fn)(params, x, posterior_streams(keys_B))


def test_the_two_layer_elbo_and_iwae_bound_against_numpy():
  shape = (3, 2, 1)
  x = jax.random.bernoulli(jax.random.key(5), 0.4, (4, *shape)).astype(jnp.float32)
  keys_B = sampling.example_keys(jax.random.key(6), 0, 4)
  for loss, k in (("elbo", 1), ("iwae", 3)):
    config = _tiny(loss=loss, **{"model.num_samples": k})
    model, params = _init(config, shape)
    want_KxB = _numpy_log_weights(params, np.asarray(x).reshape(4, -1), _draws(keys_B, k, 5), 3)
    m = _per_example(model, params, x, keys_B, config)
    bound_B = special.logsumexp(want_KxB, axis=0) - np.log(k)
    np.testing.assert_allclose(np.asarray(m["loss"]), -bound_B, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(m["elbo"]), np.mean(want_KxB, 0), rtol=1e-5)


def test_the_nll_estimate_matches_quadrature_of_the_double_integral():
  """1-d z1 and z2 over 4 binary pixels: log p(x) = log of the double integral of
  p(x|z1) p(z1|z2) p(z2) by nested Gauss-Hermite quadrature (z2 against N(0, 1), z1 against
  p(z1|z2)), for all 16 images; the estimator with k = 10000 matches within its MC error."""
  shape, k = (2, 2, 1), 10000
  config = _tiny(latents=1, latents2=1, **{"eval_num_samples": k, "eval_sample_chunk": k})
  model, params = _init(config, shape, seed=3)
  # Proposals wider than the posteriors they cover (sd 2.5, means weakly tied to their inputs):
  # bounded weights, so k draws pin log p(x) down to a few hundredths.
  params = {**params, "encoder": _wide(params["encoder"]), "encoder2": _wide(params["encoder2"])}
  x_BxD = np.array([[(i >> j) & 1 for j in range(4)] for i in range(16)], np.float64)
  t, w = np.polynomial.hermite_e.hermegauss(80)
  w = w / np.sqrt(2 * np.pi)  # Weights of E over N(0, 1).
  p_mean1_I, p_sd1_I = _gaussian(params["decoder2"], t[:, None])  # [I, 1] each.
  z1_IxJ = p_mean1_I + p_sd1_I * t[None, :]
  log_px_IxJxB = _log_bernoulli(params["decoder"], z1_IxJ[..., None, None], x_BxD[None, None])
  log_px_B = special.logsumexp(log_px_IxJxB, axis=(0, 1),
                               b=(w[:, None] * w[None, :])[..., None])
  # The quadrature's own check: the probabilities of all 16 images sum to 1.
  np.testing.assert_allclose(np.sum(np.exp(log_px_B)), 1.0, rtol=1e-9)

  x = jnp.asarray(x_BxD.reshape(16, *shape), jnp.float32)
  keys_B = sampling.example_keys(jax.random.key(7), 0, 16)
  m = _per_example(model, params, x, keys_B, config, step=None)
  log_weights = jax.jit(lambda p, x, keys: likelihood.importance_log_weights(
      model, p, x, x, keys, k, k))  # Jitted: eager dispatch compiles op by op.
  log_w_KxB = np.asarray(log_weights(params, x, sampling.fold_in(keys_B, 1)), np.float64)
  w_KxB = np.exp(log_w_KxB - log_w_KxB.max(0))
  se_B = np.std(w_KxB, 0) / np.mean(w_KxB, 0) / np.sqrt(k)  # Delta method: se of log mean w.
  assert np.all(se_B < 0.03), se_B
  np.testing.assert_array_less(np.abs(-np.asarray(m["nll"]) - log_px_B), 4 * se_B + 1e-4)
  # The IWAE loss's test NLL is the same estimate from the same draws.
  m_iwae = _per_example(model, params, x, keys_B,
                        _set(config, {"loss": "iwae", "model.num_samples": 2}), step=None)
  np.testing.assert_allclose(np.asarray(m_iwae["nll"]), np.asarray(m["nll"]), rtol=1e-6)


@pytest.mark.parametrize("fields,message", [
    ({"model.latents2": 0}, "config.model.latents2=0 must be >= 1 for 'hvae': the size of the "
     "top stochastic layer z2, e.g. --config.model.latents2=50"),
    ({"model.hidden2": ()}, "config.model.hidden2=() must be positive layer widths for 'hvae' "
     "(the z1 <-> z2 MLPs), e.g. --config.model.hidden2=\"(100, 100)\""),
    ({"objective.beta": 2.0}, "'hvae' trains a bound on log p(x), with no KL weight; leave "
     "config.objective.beta=1 and kl_warmup_steps=0"),
    ({"model.num_samples": 5}, "config.model.num_samples=5 is the K of a multi-sample bound: "
     "use > 1 only with a bound, not config.loss='elbo'"),
    ({"model.name": "vae"}, "config.model.hidden2=(4,) applies to model 'hvae', not 'vae'; set "
     "it to ()"),
])
def test_validation_refuses_with_one_line(fields, message):
  with pytest.raises(UserError) as e:
    validation.validate_config(_set(_tiny(), fields), 1)
  assert str(e.value) == message
  # The IWAE's k is a field the VAE reads too: accepted here.
  validation.validate_config(_tiny(loss="iwae", **{"model.num_samples": 5}), 1)


# --- The short real-MNIST run, on 1 device here and on 4 in a process of its own.

def _train(workdir: str, data_dir: str) -> None:
  from aejax import train

  config = _set(load_experiment(os.path.join(REPO, EXPERIMENT)), RUN)
  train.train_and_evaluate(config, workdir, data_dir=data_dir)


@pytest.fixture(scope="module", autouse=True)
def _run_on_4_devices(data_dir, tmp_path_factory):
  """(root, process): the 4-device run, started as the module starts so that it trains while
  this process checks the objective and trains the 1-device run."""
  root = tmp_path_factory.mktemp("hvae")
  proc = start_on_4_devices(
      f"import test_hvae; test_hvae._train({str(root / 'on4')!r}, {data_dir!r})")
  yield root, proc
  proc.kill()  # Only if a test failed before waiting for it.
  proc.communicate()


@pytest.fixture(scope="module")
def runs(_run_on_4_devices, data_dir):
  """workdirs[devices]."""
  root, proc = _run_on_4_devices
  _train(str(root / "on1"), data_dir)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  return {1: str(root / "on1"), 4: str(root / "on4")}


def _test_line(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if '"test"' in line][-1]


def _constant_nll(data_dir) -> float:
  """NLL per test image of independent Bernoulli pixels at the mean training image (the best
  input-blind model), in expectation over the test images' binarisation."""
  from aejax.data import dataset

  builder_dir = dataset.prepare("mnist", data_dir)
  train_x = dataset.load_split(builder_dir, SPLITS[0])[0].astype(np.float64) / 255
  test_x = dataset.load_split(builder_dir, SPLITS[1])[0].astype(np.float64) / 255
  p = np.clip(train_x.mean(axis=0), 1e-6, 1 - 1e-6)
  return float(np.mean(-np.sum(test_x * np.log(p) + (1 - test_x) * np.log(1 - p),
                               axis=(1, 2, 3))))


def test_learns_and_a_4_device_mesh_trains_as_one_device(runs, data_dir):
  test = _test_line(runs[1])
  baseline = _constant_nll(data_dir)
  # By far more than the test split's one binarisation could move the mean (well under a nat).
  assert test["nll"] < baseline - 10, (test, baseline)
  # assert_same_training's count of weights beyond rtol 1e-5 does not fit the two 784 x 128
  # layers: thousands of their near-zero weights differ there by rounding (measured: 5% of the
  # encoder's first layer). Every weight agrees to 3e-5 instead (measured at most 1.2e-5), a
  # thirtieth of one Adam step at the rate of 1e-3.
  jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=0, atol=3e-5),
               saved_state(runs[4])[0]["params"], saved_state(runs[1])[0]["params"])
  np.testing.assert_allclose(_test_line(runs[4])["nll"], test["nll"], rtol=1e-4)


def test_analyze_and_restore(runs, data_dir):
  workdir = runs[1]
  # As a command: aejax.analyze's flags would clash in-process with aejax.main's.
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--probe_examples=200",
                   f"--k={K_ANALYZE}", module="aejax.analyze", timeout=300, env=quick_compile())
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))
  assert {"samples.png", "interpolation.png"} <= set(result["figures"])
  # The same k over the same test images, binarised by another draw: the same NLL, near enough.
  assert abs(result["metrics"]["nll"] - _test_line(workdir)["nll"]) < 1.5, result["metrics"]
  run = restored.restore(workdir, data_dir=data_dir)
  images = np.zeros((3, 28, 28, 1), np.uint8)
  assert run.encode(images).shape == (3, 8)
  assert [v.shape for v in run.posterior(images)] == [(3, 8), (3, 8)]
  samples = run.sample(5)
  assert samples.shape == (5, 28, 28, 1) and 0 <= samples.min() and samples.max() <= 1


def test_compare_tabulates_the_runs(runs, tmp_path):
  # No --metric: the family's default is the bound, elbo.
  proc = run_aejax(runs[1], runs[4], f"--out={tmp_path}", module="aejax.compare", timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  header, *rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  # The two runs share one config: one variant of n = 2, the mean of their test elbos.
  assert "test elbo" in header and len(rows) == 1, proc.stdout
  cells = [c.strip() for c in rows[0].strip("|").split("|")]
  assert cells[:2] == ["all runs", "2"], proc.stdout
  mean = np.mean([_test_line(runs[d])["elbo"] for d in (1, 4)])
  assert abs(float(cells[2].split(" ± ")[0]) - mean) < 0.051, (cells, mean)


def test_a_group_of_two_seeds_of_the_two_layer_iwae_equals_the_runs_alone(mnist):
  _assert_group_is_runs_alone(_two_runs({}, family="hvae", **{
      "loss": "iwae", "model.num_samples": 3, "model.hidden2": (8,), "model.latents2": 2,
      "input.binarize": "dynamic"}), mnist)
