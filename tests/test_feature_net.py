"""The feature network of a dataset (aejax/analysis/feature_net.py) on the real MNIST: metrics in
its features grow with corruption, it is stored by the fingerprint of its recipe and data and
rebuilt bitwise alike, and a dataset that cannot have one is one line.

Each test names, after "catches:", the change to aejax/analysis/feature_net.py it was seen to
fail on.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage

from aejax.analysis import feature_net as fn
from aejax.analysis import sample_quality as sq
from aejax.data import dataset
from aejax.data import views
from aejax.errors import UserError

from conftest import REPO

# One epoch on a third of the train split: enough for features that tell corrupted digits apart.
SHORT = fn.Recipe(arch="lenet", epochs=1, train_examples=20_000)
# Seconds to train: for what a stored network is and how it is found again.
TINY = fn.Recipe(arch="lenet", epochs=1, train_examples=1000)
N = 2000  # Images per set in the monotone tests.


@pytest.fixture(scope="module")
def short_net(data_dir, tmp_path_factory):
  return fn.for_dataset("mnist", data_dir, recipe=SHORT,
                        store_dir=str(tmp_path_factory.mktemp("features")))


@pytest.fixture(scope="module")
def test_images(mnist):
  return mnist[2], mnist[3]


def _metrics(net, real_images, fake_images):
  real_NxD, fake_NxD = net.features(real_images), net.features(fake_images)
  kid, _ = sq.kid(real_NxD, fake_NxD)
  return (sq.frechet_distance(real_NxD, fake_NxD), kid,
          sq.prdc(real_NxD, fake_NxD)["precision"])


def _noisy(images_uint8, std, seed=0):
  x = images_uint8 / 255.0 + np.random.default_rng(seed).normal(size=images_uint8.shape) * std
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _blurred(images_uint8, sigma):
  x = scipy.ndimage.gaussian_filter(images_uint8.astype(np.float64), (0, sigma, sigma, 0))
  return np.round(x).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=["noise", "blur"])
def corrupted_rows(request, short_net, test_images):
  """(FD, KID, precision) of the second half of the test split, ever more corrupted (Gaussian
  noise of std 0, 0.1, 0.2, 0.4; a blur of sigma 0, 0.5, 1, 2), against the first half."""
  images = test_images[0]
  real, fake = images[:N], images[5000:5000 + N]
  corrupt = {"noise": _noisy, "blur": _blurred}[request.param]
  return [_metrics(short_net, real, corrupt(fake, level))
          for level in ((0.0, 0.1, 0.2, 0.4) if request.param == "noise" else (0.0, 0.5, 1, 2))]


def test_fd_and_kid_grow_with_noise_and_blur(corrupted_rows):
  """The metrics' distances grow as the generated images move away from the real ones."""
  fds, kids, _ = zip(*corrupted_rows)
  assert all(a < b for a, b in zip(fds, fds[1:])), fds
  assert all(a < b for a, b in zip(kids, kids[1:])), kids


# Improved precision is not monotone in image quality: in the full lenet_mnist (docs/analysis.md,
# bench/sample_quality_corruption.py) the mildest noise and blur raise it (0.885 to 0.909 and
# 0.936) before it falls; strict xfail: SHORT's precisions are not strictly decreasing either.
@pytest.mark.xfail(strict=True, reason="precision rises at the mildest noise and blur")
def test_precision_falls_with_noise_and_blur(corrupted_rows):
  precisions = [row[2] for row in corrupted_rows]
  assert all(a > b for a, b in zip(precisions, precisions[1:])), precisions


def test_record_holds_the_recipe_name_and_test_accuracy(short_net, test_images):
  """catches: the accuracy averaged over the padding rows of the last batch (0.9999 for 1.0);
  features from layer [1] (the logits: shape [N, 10])."""
  images, labels = test_images
  assert short_net.name == "lenet_mnist"
  record = short_net.record
  assert record["recipe"]["epochs"] == 1 and record["recipe"]["train_examples"] == 20_000
  assert record["data"]["splits"] == {"test": 10_000, "train": 60_000}
  # The accuracy from the model applied directly, in chunks of another size than features'.
  model = fn.LeNet(num_classes=10)
  outputs = [model.apply(short_net.params, images[i:i + 2000] / np.float32(255))
             for i in range(0, len(images), 2000)]
  feats = np.concatenate([np.asarray(f) for f, _ in outputs])
  logits = np.concatenate([np.asarray(l) for _, l in outputs])
  assert record["test_accuracy"] == np.mean(logits.argmax(-1) == labels)
  assert record["test_accuracy"] > 0.9
  np.testing.assert_allclose(short_net.features(images[:7]), feats[:7], rtol=1e-5, atol=1e-5)
  with pytest.raises(UserError, match="takes uint8 images of shape"):
    short_net.features(images[:7].astype(np.float32))


def test_same_recipe_twice_gives_bitwise_the_same_features(data_dir, mnist, tmp_path):
  """catches: the epoch's permutation drawn from a key that is not the recipe's seed's."""
  a = fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=str(tmp_path / "a"))
  b = fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=str(tmp_path / "b"))
  images = mnist[2][:1000]
  np.testing.assert_array_equal(a.features(images), b.features(images))
  assert a.record == b.record
  fingerprint = a.record["fingerprint"]
  assert os.listdir(tmp_path / "a") == [fingerprint]


def test_a_changed_recipe_is_rebuilt_and_the_same_one_reused(data_dir, mnist, tmp_path,
                                                              monkeypatch):
  """catches: the record's recipe not compared on load (a tampered record reused)."""
  store = str(tmp_path)
  first = fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=store)
  changed = fn.for_dataset("mnist", data_dir, recipe=dataclasses.replace(TINY, seed=1),
                           store_dir=store)
  assert sorted(os.listdir(store)) == sorted([first.record["fingerprint"],
                                              changed.record["fingerprint"]])
  assert changed.record["recipe"]["seed"] == 1
  images = mnist[2][:500]
  assert not np.array_equal(first.features(images), changed.features(images))

  def no_training(*args, **kwargs):
    raise AssertionError("trained a network that is stored")

  monkeypatch.setattr(fn, "train", no_training)
  again = fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=store)
  np.testing.assert_array_equal(again.features(images), first.features(images))

  # A record that says another recipe than the directory's name is never reused.
  path = os.path.join(store, first.record["fingerprint"], fn.RECORD)
  record = json.load(open(path))
  record["recipe"]["epochs"] = 2
  json.dump(record, open(path, "w"))
  with pytest.raises(UserError, match="another recipe") as e:
    fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=store)
  assert "\n" not in str(e.value)


def test_every_field_of_the_recipe_and_the_data_is_in_the_fingerprint(data_dir, tmp_path):
  """catches: the view left out of the recipe's dict; the data left out of the fingerprint;
  dataset_info.json's checksum left out of the data's identity."""
  data = {"name": "mnist/3.0.1", "version": "3.0.1", "splits": {"test": 1, "train": 2},
          "dataset_info_sha256": "0" * 64}
  base = fn.fingerprint(TINY, data)
  changes = {"arch": "allconv", "trained": False, "epochs": 2, "batch_size": 64,
             "learning_rate": 3e-4, "seed": 1, "train_examples": None,
             "view": views.View(crop=(20, 20))}
  assert set(changes) == {f.name for f in dataclasses.fields(fn.Recipe)}
  for field, value in changes.items():
    assert fn.fingerprint(dataclasses.replace(TINY, **{field: value}), data) != base, field
  for key, value in (("version", "3.0.2"), ("splits", {"test": 1, "train": 3}),
                     ("dataset_info_sha256", "1" * 64)):
    assert fn.fingerprint(TINY, {**data, key: value}) != base, key

  # The same files with another dataset_info.json: another identity, by its checksum alone.
  builder_dir = dataset.prepare("mnist", data_dir)
  copy = tmp_path / "mnist" / "3.0.1"
  copy.mkdir(parents=True)
  for name in os.listdir(builder_dir):
    if name.endswith((".json", "-00001")):
      os.symlink(os.path.join(builder_dir, name), copy / name)
  info = json.load(open(os.path.join(builder_dir, "dataset_info.json")))
  os.remove(copy / "dataset_info.json")
  json.dump({**info, "description": info.get("description", "") + " "},
            open(copy / "dataset_info.json", "w"))
  original, changed = fn.data_identity(builder_dir), fn.data_identity(str(copy))
  assert original["dataset_info_sha256"] != changed["dataset_info_sha256"]
  assert {**original, "dataset_info_sha256": None} == {**changed, "dataset_info_sha256": None}


def test_a_dataset_without_labels_gets_the_random_embedding(data_dir, mnist, tmp_path,
                                                            monkeypatch):
  """catches: random_embedding=False not refused; the network's name not saying it is random."""
  monkeypatch.setattr(dataset, "has_labels", lambda builder_dir: False)

  def no_training(*args, **kwargs):
    raise AssertionError("trained a random embedding")

  monkeypatch.setattr(fn, "train", no_training)
  net = fn.for_dataset("mnist", data_dir, store_dir=str(tmp_path))
  assert net.name == "random_lenet_mnist"
  assert net.record["recipe"]["trained"] is False
  assert net.record["test_accuracy"] is None
  assert "randomly initialised" in net.record["embedding"]
  assert net.features(mnist[2][:3]).shape == (3, fn.FEATURE_DIM)

  with pytest.raises(UserError, match="has no labels to train a feature classifier") as e:
    fn.for_dataset("mnist", data_dir, store_dir=str(tmp_path), random_embedding=False)
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="cannot be trained"):
    fn.for_dataset("mnist", data_dir, recipe=TINY, store_dir=str(tmp_path))


def test_a_dataset_not_prepared_offline_is_one_line_exit_2(tmp_path):
  """catches: for_dataset downloading by default (it fails another way: no host to reach)."""
  # A process of its own: TFDS imports TensorFlow to look the dataset up for preparing.
  code = ("from aejax import cli; from aejax.analysis import feature_net; "
          f"cli.run_command(lambda: feature_net.for_dataset('mnist', {str(tmp_path)!r}))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("aejax: error: TFDS dataset 'mnist' is not prepared in"), proc.stderr
  assert "--manual_dir" in last
  assert not os.path.exists(tmp_path / "mnist" / "3.0.1" / fn.STORE_DIR)
