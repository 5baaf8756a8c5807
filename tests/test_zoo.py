"""Every experiment file trains on real MNIST (shrunken) past the best input-blind model, the two
reproductions run a short version of their schedule end to end, and the conv experiments learn
at their own sizes.

Time: one short training per experiment file (28 MNIST files, 120 to 240 steps each, in this
process) and three conv experiments at their full sizes; each compiles its own train and evaluation
programs, which is most of the time, and no two files share a config.
"""

import glob
import json
import os

import numpy as np
import pytest

from aejax import compare
from aejax import families
from aejax import train
from aejax.configs import load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The files of other datasets train on TFDS mock copies of them in test_datasets_mock.py.
EXPERIMENTS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
                     if load_experiment(p).dataset == "mnist")


NUM_TRAIN = 12000


def shrink(config):
  """Same families, objectives and options; small widths, one epoch of a fifth of the training
  split (of a one-class file: the whole split, its digits only), at 10x the learning rate: in
  its 120 steps each file gets past the best input-blind model."""
  config.num_epochs = 1
  config.input.train_split = "train" if config.input.train_labels else f"train[:{NUM_TRAIN}]"
  config.input.test_split = "test[:2000]"
  config.batch_size = 100
  config.learning_rate *= 10
  config.eval_batch_size = 1000
  config.eval_every_epochs = 1
  config.model.hidden = tuple(min(h, 32) for h in config.model.hidden)
  config.model.channels = (4, 8)
  config.model.latents = min(config.model.latents, 16)
  config.model.codebook_size = min(config.model.codebook_size, 32)
  config.model.num_samples = min(config.model.num_samples, 4)
  config.model.num_bounds = min(config.model.num_bounds, 2)
  if config.model.name == "vamp":  # Other families must leave it at its default.
    config.model.num_pseudo = min(config.model.num_pseudo, 20)
  config.model.hidden2 = tuple(min(h, 16) for h in config.model.hidden2)
  config.model.latents2 = min(config.model.latents2, 8)
  config.model.flow_hidden = tuple(min(h, 16) for h in config.model.flow_hidden)
  if config.eval_num_samples:
    config.eval_num_samples, config.eval_sample_chunk = 12, 5  # 3 chunks, the last one partial.
  config.objective.kl_warmup_steps = min(config.objective.kl_warmup_steps, 60)
  config.objective.capacity_steps = min(config.objective.capacity_steps, 60)
  if config.opt.schedule == "stages":  # The short schedule: 2 stages of 1 epoch each.
    config.opt.stages, config.opt.stage_growth = 2, 1
    config.num_epochs = 2
  return config


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def constant_model_scores(mnist, labels, binarize: str) -> tuple[float, float]:
  """(squared error, Bernoulli NLL in nats) per test image of the best model that ignores its
  input: every pixel predicted as its mean over the training images, computed here in float64.
  A model that learned nothing from its input scores this; one that collapsed scores worse."""
  train_x, train_y, test_x, test_y = mnist
  if labels is not None:
    train_x, test_x = train_x[np.isin(train_y, labels)], test_x[np.isin(test_y, labels)]
  p = train_x.astype(np.float64).mean(axis=0) / 255.0
  x = test_x.astype(np.float64) / 255.0
  if binarize == "threshold":
    x = (x > 0.5).astype(np.float64)
  # 'dynamic' scores one Bernoulli(x) draw b per pixel: use the expectations E[b] = E[b^2] = x.
  x_sq = x if binarize == "dynamic" else np.square(x)
  sq_err = np.sum(np.square(p) - 2 * p * x + x_sq, axis=(1, 2, 3)).mean()
  p = np.clip(p, 1e-7, 1 - 1e-7)  # Border pixels are 0 in every training image.
  nll = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=(1, 2, 3)).mean()
  return float(sq_err), float(nll)


def test_every_family_has_an_experiment_file_here():
  assert {load_experiment(p).model.name for p in EXPERIMENTS} == set(families.FAMILIES)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: os.path.basename(p)[:-3])
def test_experiment_trains_on_real_mnist(path, data_dir, mnist, tmp_path):
  """The shrunken file beats the best input-blind model (every pixel its training mean) on its
  family's main metric (compare.main_metric; vqvae's, the loss, on its squared error): -ELBO
  below that model's NLL, or the squared error below its; the tanh files and vqvae.py within
  1.2x of it
  (catches: an optimizer whose updates are zero, mlp_ae.py then scoring 3.4x the constant)."""
  config = shrink(load_experiment(path))
  state = train.train_and_evaluate(config, str(tmp_path), data_dir=data_dir)
  labels = config.input.train_labels  # One-class experiments train on some digits only.
  num_train = NUM_TRAIN if labels is None else int(np.isin(mnist[1], labels).sum())
  assert int(state.step) == config.num_epochs * (num_train // config.batch_size)
  lines = read_metrics(str(tmp_path))
  test = [l for l in lines if l["split"] == "test"][-1]
  assert all(np.isfinite(v) for k, v in test.items() if k not in ("step", "epoch", "split")), test
  train_line = [l for l in lines if l["split"] == "train"][-1]
  if config.objective.kl_warmup_steps:
    assert 0 < train_line["kl_weight"] < config.objective.beta
  sq_err, nll = constant_model_scores(mnist, labels, config.input.binarize)
  if compare.main_metric(config.model.name) == "elbo":
    score, best_constant = -test["elbo"], nll
  else:
    score, best_constant = test["sq_err"], sq_err
  # Measured after the 120 steps (240 for the staged schedules): 0.62-0.92x the constant, but
  # 0.90-1.13x for the tanh networks of Burda et al., slower to start, and 1.03x for vqvae.py
  # (an untrained file scores over 2x).
  bound = 1.2 if config.model.activation == "tanh" or config.model.name == "vqvae" else 1.0
  assert score < bound * best_constant, (score / best_constant, test, best_constant)


CONV = [os.path.join(REPO, "experiments", f"{name}.py")
        for name in ("conv_ae", "conv_vae", "vqvae")]


@pytest.mark.parametrize("path", CONV, ids=lambda p: os.path.basename(p)[:-3])
def test_conv_experiment_learns_from_its_input(path, data_dir, mnist, tmp_path):
  """At the file's own sizes and settings, 98 steps on the digits 0 and 1 score below 0.9x the
  best constant prediction of those digits' test images (measured: conv_ae 0.34x, conv_vae 0.80x,
  vqvae 0.77x). conv_ae.py with a squared-error loss ends at 1.67x: its logits saturate at the
  background within the first steps, where the squared error's gradient vanishes."""
  config = load_experiment(path)
  config.input.train_labels, config.num_epochs = (0, 1), 1
  train.train_and_evaluate(config, str(tmp_path), data_dir=data_dir)
  test = [l for l in read_metrics(str(tmp_path)) if l["split"] == "test"][-1]
  sq_err, nll = constant_model_scores(mnist, (0, 1), config.input.binarize)
  if config.model.name == "vae":
    assert -test["elbo"] < 0.9 * nll, (test, nll)
  else:
    assert test["sq_err"] < 0.9 * sq_err, (test, sq_err)
