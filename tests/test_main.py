"""The command line, as a user runs it: real MNIST, real subprocesses, real exit codes."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_aejax


def _records(workdir, split=None):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r for r in rows if split is None or r["split"] == split]


def _error_lines(proc):
  return [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]


def test_mlp_ae_trains_beats_pca_and_resumes(data_dir, tmp_path):
  workdir = str(tmp_path / "mlp_ae")
  args = ["--config=experiments/mlp_ae.py", f"--workdir={workdir}", f"--data_dir={data_dir}"]
  proc = run_aejax(*args, "--config.num_epochs=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  (test,) = _records(workdir, "test")
  # PCA with 32 components reaches 13.19 per test image; one epoch of the AE must already beat it.
  assert test["sq_err"] < 13.2, test
  (train,) = _records(workdir, "train")
  assert train["step"] == 468 and train["examples_per_sec"] > 0
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["model"]["latents"] == 32 and config["num_epochs"] == 1
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["468"]
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))

  # The same command with one more epoch resumes: epoch 1 is neither redone nor re-logged.
  proc = run_aejax(*args, "--config.num_epochs=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resuming from the checkpoint at step 468" in proc.stderr
  assert "starting epoch 2 of 2" in proc.stderr
  assert "epoch 1/2" not in proc.stderr
  rows = _records(workdir)
  assert [(r["epoch"], r["split"]) for r in rows] == [
      (1, "train"), (1, "test"), (2, "train"), (2, "test")]
  assert rows[2]["step"] == 936
  assert _records(workdir, "test")[1]["sq_err"] < test["sq_err"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["468", "936"]


def test_vae_test_elbo_is_finite_and_improves(data_dir, tmp_path):
  workdir = str(tmp_path / "vae")
  proc = run_aejax("--config=experiments/vae.py", f"--workdir={workdir}",
                   f"--data_dir={data_dir}", "--config.num_epochs=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  tests = _records(workdir, "test")
  assert [r["epoch"] for r in tests] == [1, 2]
  for r in tests:
    assert -200 < r["elbo"] < -80, r  # Nats per image: finite and in MNIST's range.
    assert abs(r["elbo"] + r["rec"] + r["kl"]) < 1e-3 and r["kl"] > 0
  assert tests[1]["elbo"] > tests[0]["elbo"]


def test_training_runs_without_tensorflow(data_dir, tmp_path):
  workdir = str(tmp_path / "no_tf")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "no_tensorflow.py"),
       "--config=experiments/mlp_ae.py", f"--workdir={workdir}", f"--data_dir={data_dir}",
       "--config.num_epochs=1", "--config.model.hidden=(64,)"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "TENSORFLOW_LOADED=False" in proc.stdout
  assert len(_records(workdir, "test")) == 1


@pytest.mark.parametrize("flags,expected", [
    (["--config=experiments/mlp_ae.py", "--config.model.latnets=3"],
     "unknown config field 'latnets' (Did you mean latents"),
    (["--config=experiments/no_such_experiment.py"],
     "cannot load --config=experiments/no_such_experiment.py"),
    (["--config=experiments/mlp_ae.py", "--config.batch_size=0"], "config.batch_size=0"),
    (["--config=experiments/mlp_ae.py", "--config.loop=scna"], "unknown config.loop='scna'"),
    (["--config=experiments/mlp_ae.py", "--config.group_runs=map"],
     "unknown config.group_runs='map'"),
])
def test_bad_input_is_one_line_and_exit_code_2(flags, expected, data_dir, tmp_path):
  proc = run_aejax(*flags, f"--workdir={tmp_path / 'w'}", f"--data_dir={data_dir}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  (line,) = _error_lines(proc)
  assert expected in line
  assert "Traceback" not in proc.stderr


def test_missing_dataset_names_manual_dir(tmp_path):
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={tmp_path / 'w'}",
                   f"--data_dir={tmp_path / 'empty'}", "--nodownload", timeout=60)
  assert proc.returncode == 2, proc.stderr[-3000:]
  (line,) = _error_lines(proc)
  assert "not prepared" in line and "--manual_dir" in line
  assert "Traceback" not in proc.stderr
