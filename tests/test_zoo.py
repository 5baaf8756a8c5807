"""Every experiment file trains on real MNIST (shrunken), and the two reproductions run a short
version of their schedule end to end."""

import glob
import importlib.util
import json
import os

import numpy as np
import pytest

from aejax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# mlp_ae.py and vae.py already train end to end through the CLI in test_main.py.
COVERED_ELSEWHERE = ("mlp_ae.py", "vae.py")
EXPERIMENTS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
                     if os.path.basename(p) not in COVERED_ELSEWHERE)


def load_config(path: str):
  """An experiment's get_config(), loaded by path as config_flags does."""
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def shrink(config):
  """Same families, objectives and options; small widths, big batches, one epoch."""
  config.num_epochs = 1
  config.batch_size = 500  # 120 steps: the whole training split once.
  config.eval_batch_size = 1000
  config.eval_every_epochs = 1
  config.model.hidden = tuple(min(h, 32) for h in config.model.hidden)
  config.model.channels = (4, 8)
  config.model.latents = min(config.model.latents, 16)
  config.model.codebook_size = min(config.model.codebook_size, 32)
  config.model.num_samples = min(config.model.num_samples, 4)
  if config.eval_num_samples:
    config.eval_num_samples, config.eval_sample_chunk = 12, 5  # 3 chunks, the last one partial.
  config.objective.kl_warmup_steps = min(config.objective.kl_warmup_steps, 60)
  if config.opt.schedule == "stages":  # The short schedule: 2 stages of 1 epoch each.
    config.opt.stages, config.opt.stage_growth = 2, 1
    config.num_epochs = 2
  return config


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: os.path.basename(p)[:-3])
def test_experiment_trains_on_real_mnist(path, data_dir, mnist, tmp_path):
  config = shrink(load_config(path))
  state = train.train_and_evaluate(config, str(tmp_path), data_dir=data_dir)
  labels = config.input.train_labels  # One-class experiments train on some digits only.
  num_train = 60000 if labels is None else int(np.isin(mnist[1], labels).sum())
  assert int(state.step) == config.num_epochs * (num_train // config.batch_size)
  lines = read_metrics(str(tmp_path))
  test = [l for l in lines if l["split"] == "test"][-1]
  assert all(np.isfinite(v) for k, v in test.items() if k not in ("step", "epoch", "split")), test
  train_line = [l for l in lines if l["split"] == "train"][-1]
  if config.model.name == "vae":
    assert test["elbo"] < 0
  if config.eval_num_samples:
    # The importance-sampled NLL is a tighter bound than the (negated) ELBO on average.
    assert test["nll"] <= -test["elbo"] + 1.0, test
  if config.model.name == "vqvae":
    assert 1.0 <= test["code_perplexity"] <= config.model.codebook_size
  if config.objective.kl_warmup_steps:
    assert 0 < train_line["kl_weight"] < config.objective.beta
