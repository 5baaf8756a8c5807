"""Anomaly detection with held-out classes: config.input.train_labels and analyze's AUROCs.

One small one-class run (digit 1, a 784-32-4 AE) is trained once for the module: one epoch, then
resumed for a second, as a user would, in subprocesses on the real MNIST.
"""

import json
import os

import chex
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aejax import configs
from aejax import train
from aejax import validation
from aejax.analysis import anomaly
from aejax.analysis import restored as restored_lib
from aejax.errors import UserError
from aejax.run import rundir
from conftest import run_aejax

ONE_DEVICE = {"XLA_FLAGS": ""}
TINY = ["--config.model.hidden=(32,)", "--config.model.latents=4", "--config.batch_size=128"]
DIGIT_1_TRAIN_IMAGES = 6742  # MNIST's training images of digit 1 (LeCun et al.'s counts).
STEPS_PER_EPOCH = DIGIT_1_TRAIN_IMAGES // 128  # 52; the remaining 86 wait for a permutation.


def _main(workdir, data_dir, *flags):
  return run_aejax("--config=experiments/mlp_ae.py", f"--workdir={workdir}",
                   f"--data_dir={data_dir}", *TINY, *flags, env=ONE_DEVICE)


def _records(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


@pytest.fixture(scope="module")
def one_class(data_dir, tmp_path_factory):
  """(workdir, stderr of the resumed run): digit 1 only, epoch 1, then resumed for epoch 2."""
  workdir = str(tmp_path_factory.mktemp("anomaly") / "digit1")
  for epochs in (1, 2):
    proc = _main(workdir, data_dir, '--config.input.train_labels=(1,)',
                 f"--config.num_epochs={epochs}")
    assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc.stderr


def test_one_class_run_trains_on_digit_1_only_and_resumes(one_class, mnist, data_dir, tmp_path):
  workdir, resumed_stderr = one_class
  assert np.sum(mnist[1] == 1) == DIGIT_1_TRAIN_IMAGES  # The count the epoch length rests on.
  assert f"{DIGIT_1_TRAIN_IMAGES} train and 1135 test images" in resumed_stderr
  assert f"Resuming from the checkpoint at step {STEPS_PER_EPOCH}" in resumed_stderr
  assert [r["step"] for r in _records(workdir, "train")] == [52, 104]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["52", "104"]
  with open(os.path.join(workdir, "checkpoints", "104", "meta", "metadata")) as f:
    meta = json.load(f)
  assert meta["steps_per_epoch"] == STEPS_PER_EPOCH and meta["epoch"] == 2

  # The same two epochs uninterrupted, in stream mode (which reads the full split's files by
  # index): the resumed device-mode run ends where this one does.
  config = configs.base()
  config.model.hidden, config.model.latents, config.num_epochs = (32,), 4, 2
  config.input.train_labels, config.input_mode, config.input_workers = (1,), "stream", 0
  streamed = train.train_and_evaluate(config, str(tmp_path / "stream"), data_dir=data_dir)
  resumed = restored_lib.restore(workdir)
  assert int(streamed.step) == resumed.step == 2 * STEPS_PER_EPOCH
  chex.assert_trees_all_close(streamed.params, resumed.params, rtol=1e-6, atol=0)

  # Resuming with other labels would train another run: the drift check refuses it.
  config.input.train_labels = (2,)
  with pytest.raises(UserError, match=r"input\.train_labels: \(1,\) -> \(2,\)"):
    rundir.check_resumable(workdir, config)


def test_held_out_auroc_is_sklearns_on_the_restored_models_scores(one_class, mnist, data_dir):
  workdir, _ = one_class
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--probe_examples=2000",
                   module="aejax.analyze", env=ONE_DEVICE)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "analysis", "metrics.json")) as f:
    result = json.load(f)

  # Scores recomputed here: the restored model's reconstructions, the errors in numpy.
  _, _, test_images, test_labels = mnist
  x = test_images.astype(np.float64) / 255
  recon = restored_lib.restore(workdir).reconstruct(test_images).astype(np.float64)
  sq_err_N = np.sum(np.square(recon - x), axis=(1, 2, 3))
  p = np.clip(recon, 1e-7, 1 - 1e-7)
  bce_N = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
  anomalous_N = test_labels != 1
  m = result["metrics"]
  np.testing.assert_allclose(m["auroc_sq_err"], roc_auc_score(anomalous_N, sq_err_N), atol=1e-5)
  np.testing.assert_allclose(m["auroc_bce"], roc_auc_score(anomalous_N, bce_N), atol=1e-3)
  per_label = result["held_out"]["auroc_per_label"]["sq_err"]
  assert sorted(per_label) == ["0", "2", "3", "4", "5", "6", "7", "8", "9"]
  pair = (test_labels == 1) | (test_labels == 7)
  np.testing.assert_allclose(per_label["7"], roc_auc_score(test_labels[pair] == 7, sq_err_N[pair]),
                             atol=1e-5)
  assert 0.9 < m["auroc_sq_err"] < 1  # Two epochs on 1s already tell them from other digits.
  assert "auroc_corrupted" in m and "trained on labels [1] only" in result["protocols"]["held_out"]

  # metrics.jsonl's test lines are on the test images of the trained label only.
  (last,) = [r for r in _records(workdir, "test") if r["epoch"] == 2]
  np.testing.assert_allclose(last["sq_err"], np.mean(sq_err_N[~anomalous_N]), rtol=1e-4)


@pytest.mark.parametrize("labels,batch,expected", [
    ("()", 128, "is empty"),
    ("(3, 10)", 128, "names labels [10] that mnist does not have; use labels in 0..9"),
    ("(2, 2)", 128, "repeats [2]"),
    ("(1,)", 8000, "leaves 6742 training images, fewer than config.batch_size=8000"),
])
def test_bad_train_labels_are_one_line_and_exit_2(labels, batch, expected, data_dir, tmp_path):
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={tmp_path / 'w'}",
                   f"--data_dir={data_dir}", f"--config.input.train_labels={labels}",
                   f"--config.batch_size={batch}", env=ONE_DEVICE)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert len(errors) == 1 and expected in errors[0] and "config.input.train_labels" in errors[0]
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "w" / "metrics.jsonl")


@pytest.mark.quick
def test_train_labels_must_be_integers():
  config = configs.base()
  config.input.train_labels = (1.5,)
  with pytest.raises(UserError, match="must hold integer labels"):
    validation.validate_train_labels(config, num_classes=10)
  config.input.train_labels = None  # Every label: nothing to check.
  validation.validate_train_labels(config, num_classes=10, num_selected=0)


@pytest.mark.quick
def test_compare_gives_the_mean_over_the_variants():
  from aejax import compare

  rows = [{"analysis.metrics.auroc_sq_err": (v, None, 1), "test sq_err": (w, None, 1)}
          for v, w in ((0.9, 1.0), (0.8, None), (0.7, 2.0))]
  line = compare.variants_mean(rows, ["analysis.metrics.auroc_sq_err", "test sq_err"])
  assert line == ("Mean over the 3 variants: analysis.metrics.auroc_sq_err 0.8000, "
                  "test sq_err 1.500 (over 2 of 3)")


def _no_nan(text):
  """json.loads that fails on NaN or Infinity, which Python's json writes and reads silently."""
  def refuse(constant):
    raise AssertionError(f"{constant} in metrics.json")
  return json.loads(text, parse_constant=refuse)


def test_a_prefix_without_a_normal_image_leaves_its_aurocs_out_saying_why(data_dir, tmp_path):
  """A VAE on digit 5 whose ELBO and NLL are estimated on the first 16 test images, none of them
  a 5 (the first is at index 16 in TFDS's order). Mutation: without the check in
  held_out_aurocs, auroc_neg_elbo and auroc_nll are NaN (scikit-learn's warning, exit 0)."""
  workdir = str(tmp_path / "digit5")
  proc = run_aejax("--config=experiments/vae.py", f"--workdir={workdir}", f"--data_dir={data_dir}",
                   "--config.model.hidden=(32,)", "--config.model.latents=2",
                   "--config.batch_size=500", "--config.input.train_labels=(5,)",
                   "--config.num_epochs=1", env=ONE_DEVICE)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", "--nll_images=16", "--k=10",
                   "--probe_examples=500", module="aejax.analyze", env=ONE_DEVICE)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "analysis", "metrics.json")) as f:
    result = _no_nan(f.read())
  m, protocols = result["metrics"], result["protocols"]
  assert 0.5 < m["auroc_sq_err"] <= 1 and 0.5 < m["auroc_bce"] <= 1  # On all 10,000 images.
  for name in ("auroc_neg_elbo", "auroc_nll"):
    assert name not in m
    assert protocols[name].startswith("not measured: the first 16 test images, which "), protocols
    assert protocols[name].endswith(" hold no normal image; pass a larger --nll_images (0: the "
                                    "whole test split)")
  assert sorted(result["held_out"]["auroc_per_label"]) == ["bce", "sq_err"]
  assert "(neg_elbo)" not in protocols["held_out"] and "(nll)" not in protocols["held_out"]
  report = open(os.path.join(workdir, "analysis", "report.md")).read()
  assert "| `auroc_nll`" not in report and "- **auroc_nll**: not measured: " in report


@pytest.mark.quick
def test_a_prefix_without_an_anomalous_image_leaves_its_aurocs_out_saying_why():
  """Mutation: without the check in held_out_aurocs, auroc_nll is NaN."""
  labels_N = np.array([2, 0, 4, 8, 7, 6, 0, 6, 3, 1, 8, 0, 7, 9, 8, 4, 5, 3])
  normal = tuple(l for l in range(10) if l != 5)  # The first 5 is the 17th image.
  scores = {"sq_err": np.arange(18.0), "nll": np.arange(16.0)}
  overall, per_label, left_out = anomaly.held_out_aurocs(scores, labels_N, normal)
  assert overall == {"auroc_sq_err": 16 / 17} and list(per_label) == ["sq_err"]
  assert left_out == {"auroc_nll": "not measured: the first 16 test images, which nll is "
                                   "estimated on, hold no anomalous image; pass a larger "
                                   "--nll_images (0: the whole test split)"}
