"""The deterministic regularised families, WAE-MMD and RAE: their objectives against independent
computations, their validation, and short real-MNIST runs shared by the end-to-end checks (they
learn, a 4-device mesh trains as one device does, analyze / restore / compare work)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax.configs import load_experiment
from aejax import families
from aejax import hparams
from aejax import objectives
from aejax import sampling
from aejax import validation
from aejax.analysis import restored
from aejax.errors import UserError
from conftest import (REPO, assert_same_training, quick_compile, run_aejax, saved_state,
                      start_on_4_devices)
from test_losses import _mmd_double_loop

# Tiny, on a tenth of each split: one epoch of 300 small steps (Adam learns by its step count).
SPLITS = ("train[:10%]", "test[:10%]")
TINY = {"model.hidden": (64,), "num_epochs": 1, "batch_size": 20, "input.train_split": SPLITS[0],
        "input.test_split": SPLITS[1]}
RUNS = {"wae": ("experiments/wae.py", {**TINY, "objective.mmd_weight": 10.0}),
        "rae": ("experiments/rae.py", {**TINY, "objective.rae_reg": "gp",
                                       "objective.decoder_reg": 0.01, "model.latents": 8})}


def _tiny(name: str, **objective):
  config = configs.base()
  config.model.name, config.model.hidden, config.model.latents = name, (16,), 3
  config.objective.update(objective)
  return config


def _init(config, n=6):
  model = families.create_model(config.model, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (n, 28, 28, 1))
  params = jax.jit(model.init)(jax.random.key(1), x, jax.random.key(2))["params"]
  return model, params, x


def _apply(model, method):
  """model.apply(params, *args, method=method), jitted: eager dispatch compiles op by op."""
  return jax.jit(lambda p, *args: model.apply({"params": p}, *args, method=method))


def _objective(model, params, x, keys, config, step=0):
  """The family's per-example metrics, jitted (eager dispatch of a Jacobian is slow)."""
  step = None if step is None else jnp.asarray(step)
  fn = lambda p, x, s: objectives.per_example(model, p, x, x, s, config, hparams.of(config),
                                              training=step is not None, step=step)
  return jax.jit(fn)(params, x, sampling.streams(keys))


def test_wae_objective_is_reconstruction_plus_lambda_mmd_to_its_own_prior_draws():
  config = _tiny("wae", mmd_weight=10.0)
  model, params, x = _init(config)
  keys_B = sampling.example_keys(jax.random.key(3), 0, len(x))
  m = _objective(model, params, x, keys_B, config)
  z = _apply(model, "code")(params, x)
  # The prior's draws come from the prior stream, stream 3 of the example's key (catches: prior
  # samples drawn from the posterior stream, the model's keys).
  prior = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(k, 3), (3,)))
                    for k in keys_B.key])
  np.testing.assert_allclose(float(jnp.mean(m["mmd"])), _mmd_double_loop(z, prior), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(m["loss"]), np.asarray(m["sq_err"] + 10.0 * m["mmd"]),
                             rtol=1e-6)
  # Evaluation scores the reconstruction only: the MMD is a statistic of a training batch.
  m_eval = _objective(model, params, x, keys_B, config, step=None)
  assert set(m_eval) == {"loss", "sq_err", "bce"}


def _leaves_sq(tree) -> float:
  return sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in jax.tree.leaves(tree))


def test_rae_objective_terms_against_numpy_and_finite_differences():
  x_key = jax.random.key(4)
  for reg in ("l2", "gp"):
    config = _tiny("rae", code_l2=0.5, decoder_reg=0.25, rae_reg=reg)
    config.model.activation = "tanh"  # Smooth: no ReLU kink between the finite differences.
    model, params, x = _init(config, n=3)
    m = _objective(model, params, x, x_key, config)
    z = np.asarray(_apply(model, "code")(params, x), np.float64)
    np.testing.assert_allclose(np.asarray(m["code_l2"]), 0.5 * np.sum(z ** 2, axis=1), rtol=1e-5)
    if reg == "l2":
      want = np.full(3, _leaves_sq(params["decoder"]) / 2)
    else:  # Central differences of the decoder's pixel means, one code coordinate at a time.
      decode = _apply(model, "decode")
      mean_image = lambda z_NxZ: np.asarray(jax.nn.sigmoid(decode(
          params, jnp.asarray(z_NxZ, jnp.float32))), np.float64).reshape(len(z_NxZ), -1)
      eps = 1e-3
      cols = [(mean_image(z + eps * e) - mean_image(z - eps * e)) / (2 * eps)
              for e in np.eye(3)]
      want = sum(np.sum(c ** 2, axis=1) for c in cols)
    np.testing.assert_allclose(np.asarray(m[f"decoder_{reg}"]), want, rtol=2e-3)
    np.testing.assert_allclose(
        np.asarray(m["loss"]),
        np.asarray(m["sq_err"] + 0.5 * m["code_l2"] + 0.25 * m[f"decoder_{reg}"]), rtol=1e-6)


@pytest.mark.parametrize("name,field,value,message", [
    ("wae", "mmd_weight", -1.0, "config.objective.mmd_weight=-1.0 must be >= 0"),
    ("rae", "code_l2", -0.1, "config.objective.code_l2=-0.1 must be >= 0"),
    ("rae", "decoder_reg", -1.0, "config.objective.decoder_reg=-1.0 must be >= 0"),
    ("rae", "rae_reg", "l1", "unknown config.objective.rae_reg='l1'; use one of ('l2', 'gp')"),
    ("ae", "mmd_weight", 1.0,
     "config.objective.mmd_weight=1.0 applies to model 'wae', not 'ae'; set it to 0.0"),
    ("vae", "rae_reg", "gp",
     "config.objective.rae_reg='gp' applies to model 'rae', not 'vae'; set it to 'l2'"),
    ("wae", "code_l2", 1e-4,
     "config.objective.code_l2=0.0001 applies to model 'rae', not 'wae'; set it to 0.0"),
])
def test_validation_refuses_with_one_line(name, field, value, message):
  config = _tiny(name)
  config.loss = families.FAMILIES[name].LOSSES[0]
  config.objective[field] = value
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  assert str(e.value) == message


def _train(workdirs: dict[str, str], data_dir: str) -> None:
  """Trains RUNS[name] into workdirs[name] for each name, on this process's devices."""
  from aejax import train

  for name, workdir in workdirs.items():
    path, fields = RUNS[name]
    config = load_experiment(os.path.join(REPO, path))
    config.update_from_flattened_dict(fields)
    train.train_and_evaluate(config, workdir, data_dir=data_dir)


@pytest.fixture(scope="module", autouse=True)
def _runs_on_4_devices(data_dir, tmp_path_factory):
  """(root, process): the 4-device runs, started in a process of their own as the module starts,
  so that they train while this process checks the objectives and trains the 1-device runs."""
  root = tmp_path_factory.mktemp("wae_rae")
  on_4 = {name: str(root / f"{name}-4") for name in RUNS}
  proc = start_on_4_devices(f"import test_wae_rae; test_wae_rae._train({on_4!r}, {data_dir!r})")
  yield root, proc
  proc.kill()  # Only if a test failed before waiting for it.
  proc.communicate()


@pytest.fixture(scope="module")
def runs(_runs_on_4_devices, data_dir):
  """workdirs[(family, devices)]."""
  root, proc = _runs_on_4_devices
  workdirs = {(name, d): str(root / f"{name}-{d}") for name in RUNS for d in (1, 4)}
  _train({name: workdirs[name, 1] for name in RUNS}, data_dir)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  return workdirs


def _test_line(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if '"test"' in line][-1]


def _constant_sq_err(data_dir) -> float:
  """Squared error per test image of the mean training image (the best input-blind model)."""
  from aejax.data import dataset

  builder_dir = dataset.prepare("mnist", data_dir)
  train_x = dataset.load_split(builder_dir, SPLITS[0])[0].astype(np.float64) / 255
  test_x = dataset.load_split(builder_dir, SPLITS[1])[0].astype(np.float64) / 255
  return float(np.mean(np.sum((test_x - train_x.mean(axis=0)) ** 2, axis=(1, 2, 3))))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_learns_and_a_4_device_mesh_trains_as_one_device(name, runs, data_dir):
  test = _test_line(runs[name, 1])
  baseline = _constant_sq_err(data_dir)
  assert test["sq_err"] < 0.8 * baseline, (test, baseline)
  state_1, _ = saved_state(runs[name, 1])
  state_4, _ = saved_state(runs[name, 4])
  assert_same_training(state_4["params"], state_1["params"])
  np.testing.assert_allclose(_test_line(runs[name, 4])["sq_err"], test["sq_err"], rtol=1e-4)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_analyze_and_restore(name, runs, data_dir):
  workdir = runs[name, 1]
  # As a command: aejax.analyze's flags would clash in-process with aejax.main's, which other
  # test modules import into the same pytest worker.
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--probe_examples=200",
                   module="aejax.analyze", timeout=300, env=quick_compile())
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))
  # The WAE decodes prior draws; the RAE codes of a mixture fitted to its train codes.
  assert "samples.png" in result["figures"]
  assert os.path.getsize(os.path.join(workdir, "analysis", "samples.png")) > 0
  np.testing.assert_allclose(result["metrics"]["sq_err_per_image"], _test_line(workdir)["sq_err"],
                             rtol=1e-4)
  run = restored.restore(workdir, data_dir=data_dir)
  assert run.encode(np.zeros((3, 28, 28, 1), np.uint8)).shape == (3, run.config.model.latents)
  if name == "wae":
    assert run.sample(5).shape == (5, 28, 28, 1)
  else:
    assert run.ex_post_components == 10


def test_compare_tabulates_both_families(runs, tmp_path):
  # No --metric: both families' default is the reconstruction's sq_err.
  proc = run_aejax(runs["wae", 1], runs["rae", 1], f"--out={tmp_path}",
                   module="aejax.compare", timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  header, *rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  assert "test sq_err" in header and len(rows) == 2, proc.stdout
  for name, row in zip(sorted(RUNS), rows):
    assert row.startswith(f"| {name} |") and f"| {_test_line(runs[name, 1])['sq_err']:.2f} |" in row
