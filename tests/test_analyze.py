"""Restoring and analysing real runs: `python -m aejax.analyze` and `aejax.restore`.

Two small runs are trained once for the module (one epoch on the real MNIST): an AE written by
8 CPU devices and a 2-D VAE. Every analysis runs in a fresh process with one device.

Time: the two runs, six more (one per family and encoder), and over twenty analyze commands, each
restoring a run and compiling its own evaluation programs.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from aejax.run import lock
from aejax.run import storage
from conftest import REPO, run_aejax

ONE_DEVICE = {"XLA_FLAGS": ""}
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
# Fast analysis settings; the CLI defaults are k=5000 and the whole splits.
FAST = ["--k=100", "--nll_images=1000", "--probe_examples=10000"]
# figures.SIZES at figures.DPI = 100, in pixels.
PNG_SIZES = {"reconstructions.png": (1000, 400), "samples.png": (800, 800),
             "interpolation.png": (1000, 160), "codes_2d.png": (800, 700),
             "manifold.png": (800, 800), "curves.png": (1200, 400)}


def _train(workdir, data_dir, env, experiment, *overrides):
  proc = run_aejax(f"--config={experiment}", f"--workdir={workdir}", f"--data_dir={data_dir}",
                   "--config.num_epochs=1", *overrides, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _test_record(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    (record,) = [r for r in map(json.loads, f) if r["split"] == "test"]
  return record


@pytest.fixture(scope="module")
def ae_run(data_dir, tmp_path_factory):
  """An AE checkpoint written by a process with 8 (CPU) devices."""
  workdir = str(tmp_path_factory.mktemp("analyze") / "ae8")
  proc = _train(workdir, data_dir, EIGHT_DEVICES, "experiments/mlp_ae.py",
                "--config.model.hidden=(32,)", "--config.model.latents=8",
                "--config.batch_size=128", "--config.eval_batch_size=1000")
  assert "8 local of 8 devices" in proc.stderr
  return workdir


@pytest.fixture(scope="module")
def vae_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("analyze") / "vae2")
  _train(workdir, data_dir, ONE_DEVICE, "experiments/vae.py",
         "--config.model.hidden=(64,)", "--config.model.latents=2")
  return workdir


def _analyze(workdir, data_dir, *flags):
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", *flags,
                   module="aejax.analyze", env=ONE_DEVICE)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "analysis", "metrics.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def ae_analysis(ae_run, data_dir):
  return _analyze(ae_run, data_dir, *FAST)


@pytest.fixture(scope="module")
def vae_analysis(vae_run, data_dir):
  return _analyze(vae_run, data_dir, *FAST)


def _png_size(path):
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
  return struct.unpack(">II", head[16:24])


def _check_analysis(result, workdir, expected_figures):
  m = result["metrics"]
  assert all(np.isfinite(v) for v in m.values()), m
  assert 0 < m["sq_err_per_image"] < 784 and 0 < m["pca_sq_err_per_image"] < 784
  np.testing.assert_allclose(m["sq_err_per_pixel"] * 784, m["sq_err_per_image"], rtol=1e-6)
  np.testing.assert_allclose(m["pca_sq_err_per_pixel"] * 784, m["pca_sq_err_per_image"],
                             rtol=1e-6)
  assert 0 < m["bce"] < 784 * np.log(2) * 2
  # The codes carry the digit: well above the 10% of chance, after one epoch.
  assert 0.3 < m["linear_probe_accuracy"] <= 1 and 0.3 < m["knn_accuracy"] <= 1
  assert 0.6 < m["auroc_corrupted"] <= 1  # Corrupted images reconstruct worse than clean ones.
  assert "corrupted vs clean" in result["protocols"]["corrupted"]
  assert result["settings"]["devices"] == 1 and result["test_images"] == 10000
  assert result["settings"]["probe_train_examples"] == 10000

  out = os.path.join(workdir, "analysis")
  assert sorted(result["figures"]) == sorted(expected_figures)
  for name in expected_figures:
    assert _png_size(os.path.join(out, name)) == PNG_SIZES[name], name
  report = open(os.path.join(out, "report.md")).read()
  for name in expected_figures:
    assert f"]({name})" in report
  for name, value in m.items():
    assert f"| `{name}` | {value:.4f} |" in report


def test_analyze_ae(ae_run, ae_analysis):
  _check_analysis(ae_analysis, ae_run, ["reconstructions.png", "codes_2d.png", "curves.png"])
  assert ae_analysis["model"] == "ae" and "nll" not in ae_analysis["metrics"]
  assert ae_analysis["settings"]["pca_components"] == 8


def test_analyze_vae_nll_is_below_the_negative_elbo(vae_run, vae_analysis):
  _check_analysis(vae_analysis, vae_run, list(PNG_SIZES))
  m = vae_analysis["metrics"]
  assert vae_analysis["settings"]["k"] == 100 and vae_analysis["settings"]["nll_images"] == 1000
  assert 50 < m["nll"] < 300 and -300 < m["elbo"] < -50
  assert m["nll"] <= -m["elbo"], m
  # The restored model scores like the trained one: the training's own test ELBO (all 10000
  # images, other posterior samples) is within a few nats of the analysis's.
  assert abs(m["elbo"] - _test_record(vae_run)["elbo"]) < 5


def test_checkpoint_from_8_devices_restores_and_analyses_on_1(ae_run, ae_analysis):
  # The AE is deterministic and unbinarised: the 1-device analysis of the 8-device checkpoint
  # reproduces the test error the 8-device training measured at its end.
  np.testing.assert_allclose(ae_analysis["metrics"]["sq_err_per_image"],
                             _test_record(ae_run)["sq_err"], rtol=1e-5)
  assert ae_analysis["step"] == 468 and ae_analysis["settings"]["devices"] == 1


def test_pca_baseline_at_30_components_matches_hinton_and_salakhutdinov(mnist):
  from aejax.analysis import probes

  train_images, _, test_images, _ = mnist
  mean, basis = probes.pca_fit(train_images.reshape(60000, -1) / 255.0, 30)
  err = probes.pca_squared_error(test_images.reshape(10000, -1) / 255.0, mean, basis)
  assert abs(np.mean(err) - 13.87) <= 0.05, np.mean(err)


def _error_line(proc):
  lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  return lines[0]


def test_missing_checkpoints_or_step_is_one_line_listing_the_steps(vae_run, data_dir, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  line = _error_line(run_aejax(f"--workdir={empty}", module="aejax.analyze", timeout=120))
  assert "existing steps are: none" in line

  no_ckpt = tmp_path / "no_ckpt"  # A run's config but no checkpoint (killed before the first).
  no_ckpt.mkdir()
  (no_ckpt / "config.json").write_text(open(os.path.join(vae_run, "config.json")).read())
  line = _error_line(run_aejax(f"--workdir={no_ckpt}", module="aejax.analyze", timeout=120))
  assert "has no checkpoints" in line and "existing steps are: none" in line

  line = _error_line(run_aejax(f"--workdir={vae_run}", "--step=7", module="aejax.analyze",
                               timeout=120))
  assert "--step=7" in line and "existing steps are: 468" in line


@pytest.mark.parametrize("flags, words", [
    (["--disentanglement"], "mnist has no ground-truth factors"),
    (["--disentanglement", "--disentanglement_scale=0"],
     "--disentanglement_scale=0 must be from 0.01 to 1"),
    (["--disentanglement", "--disentanglement_scale=1.5"],
     "--disentanglement_scale=1.5 must be from 0.01 to 1"),
    (["--disentanglement_scale=0.1"], "has no effect without --disentanglement"),
])
def test_disentanglement_where_it_cannot_be_measured_is_one_line_before_any_analysis(
    vae_run, data_dir, flags, words):
  """On MNIST (no factors) or with a size flag out of range or without --disentanglement: one
  line, exit 2, before the first analysis step, the previous analysis kept.
  catches: the factor check made after the other analyses (their log line shows), a scale of 0
  taken (sizes of 1 point), a size flag ignored without --disentanglement."""
  metrics_json = os.path.join(vae_run, "analysis", "metrics.json")
  before = open(metrics_json).read() if os.path.exists(metrics_json) else None
  proc = run_aejax(f"--workdir={vae_run}", f"--data_dir={data_dir}", *flags,
                   module="aejax.analyze", env=ONE_DEVICE, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert words in _error_line(proc), proc.stderr[-2000:]
  assert "Reconstruction and likelihood done" not in proc.stderr
  assert (open(metrics_json).read() if os.path.exists(metrics_json) else None) == before


def test_python_api_works_on_any_batch_size(ae_run, vae_run, mnist):
  import aejax
  from aejax.errors import UserError

  test_images = mnist[2]
  ae = aejax.restore(ae_run)  # Written by 8 devices, restored into this 1-device process.
  assert ae.step == 468 and ae.config.model.latents == 8
  codes = ae.encode(test_images[:1234])  # Not a multiple of the internal batch.
  assert codes.shape == (1234, 8) and codes.dtype == np.float32
  for n in (0, 1, 501):
    np.testing.assert_allclose(ae.encode(test_images[:n]), codes[:n], rtol=1e-5, atol=1e-5)
  # uint8 images are scaled to [0, 1]: the same codes as from float input.
  np.testing.assert_allclose(ae.encode(test_images[:7] / 255.0), codes[:7], rtol=1e-5,
                             atol=1e-5)
  recon = ae.reconstruct(test_images)
  assert recon.shape == test_images.shape and 0 <= recon.min() and recon.max() <= 1
  sq_err = np.mean(np.sum(np.square(recon - test_images / 255.0), axis=(1, 2, 3)))
  np.testing.assert_allclose(sq_err, _test_record(ae_run)["sq_err"], rtol=1e-4)
  with pytest.raises(UserError, match="no prior"):
    ae.sample(4)
  with pytest.raises(UserError, match="do not fit"):
    ae.encode(test_images[:3, :, :, 0])

  vae = aejax.restore(vae_run, step=468)
  mean, logvar = vae.posterior(test_images[:3])
  np.testing.assert_allclose(vae.encode(test_images[:3]), mean)
  assert logvar.shape == (3, 2)
  samples = vae.sample(5, seed=1)
  assert samples.shape == (5, 28, 28, 1) and 0 <= samples.min() and samples.max() <= 1
  assert vae.decode(np.zeros((0, 2))).shape == (0, 28, 28, 1)
  with pytest.raises(UserError, match="existing steps are: 468"):
    aejax.restore(vae_run, step=1)


def test_nll_of_uint8_and_float_images_is_the_nll_analyze_reports(vae_run, vae_analysis,
                                                                  data_dir, mnist):
  """A notebook's NLL of the first 1000 test images, k = 100, seed 0 (FAST's settings): the
  number analyze wrote, whether the images come as uint8 or as floats in [0, 1].
  catches: nll() without the run's dynamic binarisation (the Bernoulli's log-likelihood is linear
  in the target, so the mean moves by only 0.18 nats: hence rtol=1e-5), with the train split's
  binarisation keys (0.19 nats), or uint8 images not scaled to [0, 1]."""
  import aejax

  run = aejax.restore(vae_run, data_dir=data_dir)
  images = run.test_images(1000)
  np.testing.assert_array_equal(images, mnist[2][:1000])  # The run's test split, in order.
  nll_uint8 = run.nll(images, k=100)
  assert nll_uint8.shape == (1000,) and nll_uint8.dtype == np.float32
  np.testing.assert_allclose(np.mean(nll_uint8), vae_analysis["metrics"]["nll"], rtol=1e-5)
  np.testing.assert_allclose(run.nll(images / 255.0, k=100), nll_uint8, rtol=1e-5)


def test_restored_gives_a_notebook_what_it_needs(ae_run, vae_run, data_dir, mnist):
  """Data of the run, prior codes, a repr that says what was restored, decode's shape check.
  catches: train_images() reading the test split; prior codes that are not N(0, I) draws (e.g.
  posterior means); sample() decoding other codes than prior_codes(); a repr without the step or
  the metrics; decode() without its shape check (a flax shape error, not a UserError); int64
  grey levels taken as floats in [0, 1]."""
  import aejax
  from aejax.errors import UserError

  vae = aejax.restore(vae_run, data_dir=data_dir)
  np.testing.assert_array_equal(vae.train_images(5), mnist[0][:5])
  assert vae.test_images().shape == (10000, 28, 28, 1)
  z = vae.prior_codes(4000, seed=3)
  assert z.shape == (4000, 2)
  # N(0, I): mean within 4 standard errors of 0, variance within 0.1 of 1.
  assert np.all(np.abs(z.mean(0)) < 4 / np.sqrt(4000)) and np.all(np.abs(z.var(0) - 1) < 0.1)
  np.testing.assert_allclose(vae.sample(6, seed=3), vae.decode(z[:6]), rtol=1e-6)
  record = _test_record(vae_run)
  text = repr(vae)
  assert all(part in text for part in ("'vae'", "'mnist'", "step 468", vae_run,
                                       f"elbo={record['elbo']:.4g}")), text
  with pytest.raises(UserError, match=re.escape("codes of shape (3, 5) do not fit this model; "
                                                "pass [N, 2]")):
    vae.decode(np.zeros((3, 5)))
  with pytest.raises(UserError, match=re.escape("images of shape (3, 28, 28) do not fit this "
                                                "model; pass [N, 28, 28, 1]")):
    vae.encode(mnist[2][:3, :, :, 0])
  with pytest.raises(UserError, match="dtype int64: pass uint8 .* or floats in"):
    vae.nll(mnist[2][:3].astype(np.int64), k=10)
  ae = aejax.restore(ae_run, data_dir=data_dir)
  with pytest.raises(UserError, match="'ae' has no likelihood"):
    ae.nll(mnist[2][:3], k=10)
  with pytest.raises(UserError, match="'ae' has no prior"):
    ae.prior_codes(3)


def _python_blocks(markdown: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_the_notebook_session_of_docs_analysis_runs(vae_run, data_dir, monkeypatch, capsys):
  """docs/analysis.md's notebook code, exactly, on the module's VAE (its /tmp/vae the run's
  workdir, its data dir the tests' one).
  catches: a method the doc calls that is missing or renamed, or returns another shape."""
  (code,) = _python_blocks(open(os.path.join(REPO, "docs", "analysis.md")).read())
  assert '"/tmp/vae"' in code
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  scope = {}
  exec(code.replace('"/tmp/vae"', repr(vae_run)), scope)
  assert "step 468" in capsys.readouterr().out  # print(run)
  n = len(scope["images"])
  assert scope["z"].shape == (n, 2) and scope["x_hat"].shape == (n, 28, 28, 1)
  assert scope["nll"].shape == (n,) and np.all(np.isfinite(scope["nll"]))
  assert scope["x_new"].shape[1:] == (28, 28, 1) and scope["path"].shape[1:] == (28, 28, 1)


def test_checkpoint_that_does_not_fit_the_config_is_a_user_error(vae_run, tmp_path):
  import aejax
  from aejax.errors import UserError

  config = json.load(open(os.path.join(vae_run, "config.json")))
  config["model"]["latents"] = 3  # The run's config.json rewritten by another invocation.
  (tmp_path / "config.json").write_text(json.dumps(config))
  os.symlink(os.path.join(vae_run, "checkpoints"), tmp_path / "checkpoints")
  with pytest.raises(UserError, match="cannot restore step 468.*another config"):
    aejax.restore(str(tmp_path))


def test_import_aejax_stays_light():
  code = "import sys, aejax; print(sorted(m for m in ('jax', 'flax', 'orbax') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=REPO)
  assert out.stdout.strip() == "[]"
  code = "import aejax; print(aejax.restore.__module__)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=REPO)
  assert out.stdout.strip() == "aejax.analysis.restored"
  # dir() lists the lazily loaded names without loading them.
  code = ("import sys, aejax; print('restore' in dir(aejax), 'Restored' in dir(aejax), "
          "'jax' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=REPO)
  assert out.stdout.strip() == "True True False"


FAMILIES = [(name, encoder) for name in ("ae", "vae", "vqvae") for encoder in ("mlp", "conv")]


@pytest.fixture(scope="module")
def family_runs(data_dir, tmp_path_factory):
  """One tiny run per family x encoder: the digit 0 only, 2 steps; {(name, encoder): workdir}."""
  from aejax import configs
  from aejax import train

  runs = {}
  for name, encoder in FAMILIES:
    config = configs.base()
    if encoder == "conv":
      config = configs.with_conv(config)
    config.model.name, config.model.encoder = name, encoder
    config.model.hidden, config.model.channels, config.model.latents = (16,), (4, 8), 16
    config.model.codebook_size = 16
    config.loss = "elbo" if name == "vae" else "bce"
    config.input.train_labels = (0,)  # 5923 images in batches of 2000: 2 steps.
    config.batch_size, config.num_epochs = 2000, 1
    runs[name, encoder] = str(tmp_path_factory.mktemp("families") / f"{name}_{encoder}")
    train.train_and_evaluate(config, runs[name, encoder], data_dir=data_dir)
  return runs


@pytest.mark.parametrize("name,encoder", FAMILIES)
def test_restore_and_analyze_work_for_every_family_and_encoder(family_runs, name, encoder,
                                                                data_dir, mnist):
  import aejax

  run = aejax.restore(family_runs[name, encoder])
  x = mnist[2][:8]
  z = run.encode(x)
  assert z.shape == (8, 16) and np.all(np.isfinite(z))
  recon = run.reconstruct(x)
  np.testing.assert_allclose(recon, run.decode(z), rtol=1e-6)  # reconstruct = decode(encode).
  assert recon.shape == (8, 28, 28, 1) and 0 <= recon.min() and recon.max() <= 1
  # As a user runs it: in-process, aejax.analyze's flags would clash with aejax.main's, which
  # other test modules import.
  proc = run_aejax(f"--workdir={family_runs[name, encoder]}", "--k=4", f"--data_dir={data_dir}",
                   "--nll_images=16", "--probe_examples=200", "--neighbors=1",
                   module="aejax.analyze")
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(family_runs[name, encoder], "analysis", "metrics.json")) as f:
    result = json.load(f)
  assert result["step"] == 2 and np.isfinite(result["metrics"]["sq_err_per_image"]), result
  assert np.isfinite(result["metrics"]["nll"]) if name == "vae" else "nll" not in result["metrics"]


def _lock_is_free(workdir):
  """Whether another open file of the lock could take it (flock: per open file, so this works
  in the process that holds it too)."""
  fd = os.open(os.path.join(workdir, lock.FILENAME), os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False
  finally:
    os.close(fd)


def test_an_analysis_that_fails_after_locking_releases_the_lock(ae_run, tmp_path):
  """Mutations: analyze releasing the lock on success only (no `finally`), or keeping the
  temporary files of a killed analysis, fails it. As a command: aejax.analyze's flags would
  clash in-process with aejax.main's, which other test modules import."""
  workdir = str(tmp_path / "ae")
  shutil.copytree(ae_run, workdir, ignore=shutil.ignore_patterns("analysis"))
  os.makedirs(os.path.join(workdir, "analysis"))
  dead = subprocess.Popen(["true"])
  dead.wait()
  left = storage.temp_path(os.path.join(workdir, "analysis", "metrics.json"))
  open(left.replace(f".{os.getpid()}.", f".{dead.pid}."), "w").write('{"metr')  # Killed's.
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={tmp_path / 'no_data'}",
                   "--nodownload", module="aejax.analyze", timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]  # After the restore and the lock.
  assert "is not prepared in" in proc.stderr.strip().splitlines()[-1]
  assert _lock_is_free(workdir)
  assert os.listdir(os.path.join(workdir, "analysis")) == []


# aejax.analyze killed by SIGKILL halfway through writing metrics.json.
KILLED_MID_WRITE = """
import json, os, runpy, signal, sys
def dump(obj, f, **kwargs):
  text = json.dumps(obj, **kwargs)
  f.write(text[:len(text) // 2])
  f.flush()
  os.kill(os.getpid(), signal.SIGKILL)
json.dump = dump
sys.argv[0] = "aejax.analyze"
runpy.run_module("aejax.analyze", run_name="__main__")
"""


def test_an_analysis_killed_while_writing_leaves_the_old_metrics_and_compare_skips_a_damaged_one(
    ae_run, ae_analysis, data_dir, tmp_path):
  """kill -9 halfway through writing metrics.json: the lock is free and metrics.json is the
  previous one (mutation: analyze writing it in place leaves half of it). A metrics.json cut in
  half (as such a writer leaves it) is one line of aejax.compare, which tabulates the rest
  (mutation: compare reading it without the try: a traceback, exit 1)."""
  killed, damaged = str(tmp_path / "runs" / "killed"), str(tmp_path / "runs" / "damaged")
  for workdir in (killed, damaged):
    shutil.copytree(ae_run, workdir)
  metrics_json = os.path.join(killed, "analysis", "metrics.json")
  old = open(metrics_json).read()
  proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, f"--workdir={killed}",
                         f"--data_dir={data_dir}", "--seed=1", *FAST], cwd=REPO,
                        env={**os.environ, **ONE_DEVICE}, capture_output=True, text=True)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  (temp,) = [n for n in os.listdir(os.path.dirname(metrics_json)) if n.endswith(".tmp")]
  assert temp.startswith("metrics.json.")  # Where the half was written.
  assert _lock_is_free(killed)
  assert open(metrics_json).read() == old

  with open(os.path.join(damaged, "analysis", "metrics.json"), "r+") as f:
    f.truncate(len(old) // 2)
  proc = run_aejax(str(tmp_path / "runs"), "--metric=sq_err,analysis.metrics.knn_accuracy",
                   module="aejax.compare")
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [l for l in proc.stderr.splitlines() if "metrics.json" in l]
  assert len(warnings) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert re.search(rf"\] Leaving out the analysis of {damaged}: cannot read {damaged}/analysis/"
                   rf"metrics.json \(.* \(char \d+\)\); re-run aejax.analyze "
                   rf"--workdir={damaged}$", warnings[0]), warnings
  knn = json.loads(old)["metrics"]["knn_accuracy"]
  row = [l for l in proc.stdout.splitlines() if l.startswith("|") and "complete" in l]
  assert len(row) == 1 and f"{knn:.4f}" in row[0], proc.stdout  # The killed run's, n = 1.


def test_the_manifold_grid_takes_the_quantiles_of_the_models_own_prior():
  """Against the closed-form quantiles of a prior that is not N(0, I): N(3, 2^2) in z1 and a
  uniform on [-1, 1] in z2. catches: N(0, 1) quantiles for every family."""
  import types

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from scipy import stats

  from aejax.analysis import restored

  class Shifted(nn.Module):
    def sample(self, key, num):
      k1, k2 = jax.random.split(key)
      return jnp.stack([3 + 2 * jax.random.normal(k1, (num,)),
                        jax.random.uniform(k2, (num,), minval=-1, maxval=1)], 1)

  run = types.SimpleNamespace(model=Shifted(), params={})
  q_Q = np.linspace(0.05, 0.95, 7)
  q1, q2 = restored.prior_quantiles(run, q_Q, seed=0)
  np.testing.assert_allclose(q1, stats.norm.ppf(q_Q, loc=3, scale=2), atol=0.05)
  np.testing.assert_allclose(q2, stats.uniform.ppf(q_Q, loc=-1, scale=2), atol=0.02)


def test_a_negative_count_of_test_images_is_one_line_before_any_work(tmp_path):
  """catches: --test_images left out of the flag checks (a negative slice would analyse all but
  the last images)."""
  proc = run_aejax(f"--workdir={tmp_path / 'no_run'}", "--test_images=-1",
                   module="aejax.analyze")
  assert _error_line(proc).endswith("--test_images=-1, --nll_images=0 and "
                                    "--eval_memory_bytes=0 >= 0"), proc.stderr[-2000:]
  assert not os.path.exists(tmp_path / "no_run")
