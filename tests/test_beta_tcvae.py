"""beta-TCVAE: the KL parts' estimator (losses.kl_parts) against a numpy double loop of the
paper's formula and against a posterior whose aggregate is a known mixture, the family's
objective and validation, pmap against one device, and one short real-MNIST run that learns and
that aejax.analyze reports the three parts of."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax import configs
from aejax import families
from aejax import hparams
from aejax import losses
from aejax import objectives
from conftest import (assert_pmap_matches_one_device, posterior_streams, quick_compile, refusal,
                      run_aejax, run_on_4_devices)

SPLITS = ("train[:10%]", "test[:10%]")


def _paper_double_loop(z, mean, logvar, mean_ref, logvar_ref, n):
  """Chen et al.'s minibatch weighted sampling, one example and one reference at a time in
  float64: log q(z_i) = log (1 / (n M)) sum_j q(z_i | x_j), each marginal likewise."""
  m = len(mean_ref)
  out = {"mi": [], "tc": [], "dwkl": []}
  for i in range(len(z)):
    dens = np.array([[stats.norm.pdf(z[i, d], mean_ref[j, d], np.exp(0.5 * logvar_ref[j, d]))
                      for d in range(z.shape[1])] for j in range(m)])  # [M, Z]
    log_qz = np.log(np.sum(np.prod(dens, axis=1)) / (n * m))
    log_prod = np.sum(np.log(np.sum(dens, axis=0) / (n * m)))
    log_qzx = np.sum(stats.norm.logpdf(z[i], mean[i], np.exp(0.5 * logvar[i])))
    log_pz = np.sum(stats.norm.logpdf(z[i]))
    out["mi"].append(log_qzx - log_qz)
    out["tc"].append(log_qz - log_prod)
    out["dwkl"].append(log_prod - log_pz)
  return {k: np.array(v) for k, v in out.items()}


def test_kl_parts_match_the_papers_formula_in_a_double_loop():
  rng = np.random.default_rng(0)
  b, m, z_dim = 3, 5, 4
  z = rng.normal(size=(b, z_dim)).astype(np.float32)
  mean, mean_ref = (rng.normal(size=(k, z_dim)).astype(np.float32) for k in (b, m))
  logvar, logvar_ref = (rng.uniform(-1, 0.5, size=(k, z_dim)).astype(np.float32)
                        for k in (b, m))
  for n, c in ((1000.0, 1000.0), (None, 1.0)):  # None: the references are the whole set.
    # Jitted, here and below: eager dispatch compiles op by op, which costs more.
    got = jax.jit(losses.kl_parts, static_argnums=5)(
        *map(jnp.asarray, (z, mean, logvar, mean_ref, logvar_ref)), n)
    want = _paper_double_loop(*(a.astype(np.float64) for a in (z, mean, logvar, mean_ref,
                                                               logvar_ref)), c)
    for k in want:
      np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("arrangement", ["factorised", "dependent"])
def test_kl_parts_of_narrow_posteriors_at_separated_points(arrangement):
  """q(z|x_n) = N(c_n, s^2 I), s = 0.01, at points c_n 1.5 apart: the aggregate posterior of the
  set is a mixture of N bumps that do not overlap. On a 3 x 3 grid (factorised) MI = log 9 and
  TC = 0; on the diagonal's 3 points (z_1 = z_2, fully dependent) MI = log 3 and TC = log 3.
  Either way each marginal is 3 equal bumps at {-1.5, 0, 1.5}, of entropy log 3 + log(2 pi e
  s^2) / 2, so dwkl = 2 (-entropy + log(2 pi) / 2 + (mean c^2 + s^2) / 2). Many samples per
  point make dwkl's sampling error small (MI and TC do not depend on the draw here)."""
  v, s, reps = np.array([-1.5, 0.0, 1.5]), 0.01, 400
  centres = (np.stack(np.meshgrid(v, v), -1).reshape(-1, 2) if arrangement == "factorised"
             else np.stack([v, v], -1))
  n = len(centres)
  eps = np.random.default_rng(1).normal(size=(n * reps, 2))
  z = np.repeat(centres, reps, axis=0) + s * eps
  logvar = np.full_like(centres, 2 * np.log(s))
  got = jax.jit(losses.kl_parts, static_argnums=5)(*(jnp.asarray(a, jnp.float32) for a in (
      z, np.repeat(centres, reps, axis=0), np.repeat(logvar, reps, axis=0), centres, logvar)),
      None)
  got = {k: float(np.mean(np.asarray(x, np.float64))) for k, x in got.items()}
  marginal_kl = (-np.log(3) - 0.5 * np.log(2 * np.pi * np.e * s ** 2) + 0.5 * np.log(2 * np.pi)
                 + (np.mean(v ** 2) + s ** 2) / 2)
  want = {"mi": np.log(n), "tc": 0.0 if arrangement == "factorised" else np.log(3),
          "dwkl": 2 * marginal_kl}
  np.testing.assert_allclose(got["mi"], want["mi"], atol=1e-3)
  np.testing.assert_allclose(got["tc"], want["tc"], atol=1e-3)
  np.testing.assert_allclose(got["dwkl"], want["dwkl"], atol=0.1)


def _tiny(**objective):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = "beta_tcvae", (16,), 3
  config.loss = "elbo"
  config.objective.update(objective)
  return config


def test_objective_is_reconstruction_plus_weighted_parts_and_evaluation_the_elbo():
  config = _tiny(tc_alpha=0.5, tc_beta=6.0, tc_gamma=2.0)
  model = families.create_model(config.model, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (6, 28, 28, 1))
  # Jitted: eager dispatch compiles the networks op by op, seconds more on 2 cores.
  params = jax.jit(model.init)(jax.random.key(1), x, jax.random.key(2))["params"]
  hp = {**hparams.of(config), hparams.NUM_TRAIN: jnp.float32(600.0)}
  fn = jax.jit(lambda p, k, step: objectives.per_example(
      model, p, x, x, posterior_streams(k), config, hp, training=True, step=step))
  m = fn(params, jax.random.key(3), jnp.asarray(0))
  outputs = jax.jit(lambda p, k: model.apply({"params": p}, x, k))(params, jax.random.key(3))
  want = _paper_double_loop(*(np.asarray(outputs[k], np.float64) for k in (
      "z", "mean", "logvar", "mean", "logvar")), 600.0)
  for k in want:
    np.testing.assert_allclose(np.asarray(m[k]), want[k], rtol=1e-4, atol=1e-3)
  bce = -np.sum(np.asarray(x * jax.nn.log_sigmoid(outputs["logits"])
                           + (1 - x) * jax.nn.log_sigmoid(-outputs["logits"])), axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(m["loss"]), bce + 0.5 * want["mi"] + 6 * want["tc"]
                             + 2 * want["dwkl"], rtol=1e-4)
  # Evaluation: the VAE's negative ELBO (the parts are statistics of a training batch).
  m_eval = jax.jit(lambda p, k: objectives.per_example(
      model, p, x, x, posterior_streams(k), config, hp, training=False))(
          params, jax.random.key(3))
  assert set(m_eval) == {"loss", "rec", "kl", "elbo"}
  np.testing.assert_allclose(np.asarray(m_eval["loss"]), -np.asarray(m_eval["elbo"]), rtol=1e-6)


@pytest.mark.parametrize("name,field,value,message", [
    ("beta_tcvae", "tc_beta", -1.0, "config.objective.tc_beta=-1.0 must be >= 0"),
    ("beta_tcvae", "beta", 4.0, "'beta_tcvae' weighs the KL's parts by config.objective."
     "tc_alpha, tc_beta and tc_gamma; leave config.objective.beta=1 and kl_warmup_steps=0"),
    ("beta_tcvae", "batch_size", 1, "config.batch_size must be >= 2 for 'beta_tcvae': the "
     "aggregate posterior is estimated from the batch"),
    ("vae", "tc_beta", 6.0,
     "config.objective.tc_beta=6.0 applies to model 'beta_tcvae', not 'vae'; set it to 1.0"),
])
def test_validation_refuses_with_one_line(name, field, value, message):
  config = _tiny()
  config.model.name = name
  assert refusal(config, field, value) == message


def _pmap_matches_one_device():
  """As in train_step: each device's loss is the mean of its examples' terms (the references
  all-gathered), the global loss the mean over devices."""
  rng = np.random.default_rng(2)
  z, mean, logvar = (jnp.asarray(rng.normal(size=(8, 3)), jnp.float32) for _ in range(3))

  def loss(z, mean, logvar, axis_name=None):
    parts = losses.batch_kl_parts(z, mean, logvar, 100.0, axis_name)
    return jnp.mean(parts["mi"] + 6 * parts["tc"] + 2 * parts["dwkl"])

  assert_pmap_matches_one_device(loss, z, mean, logvar)


def test_pmap_over_4_devices_matches_one_device():
  run_on_4_devices("import test_beta_tcvae as t; t._pmap_matches_one_device()")


def test_mnist_learns_and_analyze_restore_and_compare_work(data_dir, tmp_path):
  workdir = str(tmp_path / "tcvae")
  proc = run_aejax("--config=experiments/beta_tcvae.py", f"--workdir={workdir}",
                   f"--data_dir={data_dir}", "--nodownload", "--config.num_epochs=1", "--config.batch_size=20",
                   f"--config.input.train_split={SPLITS[0]}",
                   f"--config.input.test_split={SPLITS[1]}", timeout=300, env=quick_compile())
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  train = [r for r in lines if '"train"' in json.dumps(r)][-1]
  test = [r for r in lines if '"test"' in json.dumps(r)][-1]
  assert {"mi", "tc", "dwkl", "rec"} <= set(train), train
  # Beats the best constant model, independent Bernoullis at the mean training pixel.
  from aejax.data import dataset

  builder_dir = dataset.prepare("mnist", data_dir)
  p = np.clip(dataset.load_split(builder_dir, SPLITS[0])[0].astype(np.float64).mean(0) / 255,
              1e-6, 1 - 1e-6)
  t = dataset.load_split(builder_dir, SPLITS[1])[0].astype(np.float64) / 255
  constant = float(np.mean(-np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=(1, 2, 3))))
  assert -test["elbo"] < 0.85 * constant, (test, constant)

  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--nodownload", "--k=2",
                   "--probe_examples=200", module="aejax.analyze", timeout=300,
                   env=quick_compile())
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))
  m, n = result["metrics"], result["test_images"]
  assert "kl_parts" in result["protocols"]
  # On the whole test split of the run: the parts sum to the mean single-sample KL(q(z|x) ||
  # p(z)), whose expectation is the closed-form KL the run's evaluation reported (another
  # binarisation and other draws: a sampling tolerance).
  parts = m["index_code_mi"] + m["total_correlation"] + m["dimensionwise_kl"]
  np.testing.assert_allclose(parts, test["kl"], rtol=0.03)
  assert 0 < m["index_code_mi"] <= np.log(n) + 1e-3, m

  # aejax.restore gives the run's posterior and prior samples; aejax.compare tabulates it by its
  # family's main metric, the test ELBO.
  from aejax.analysis import restored

  run = restored.restore(workdir, data_dir=data_dir)
  mean, logvar = run.posterior(t[:4].astype(np.float32))
  assert mean.shape == logvar.shape == (4, 10) and np.all(np.isfinite(mean))
  assert run.sample(3).shape == (3, 28, 28, 1)
  proc = run_aejax(workdir, f"--out={tmp_path / 'compare'}", module="aejax.compare", timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  header, *rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  assert "test elbo" in header and len(rows) == 1, proc.stdout
  assert rows[0].startswith(f"| all runs | 1 | {test['elbo']:.1f} |"), rows
