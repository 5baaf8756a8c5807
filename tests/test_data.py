"""The real MNIST, as TFDS prepares it from the original archives."""

import time

import numpy as np
import pytest

from aejax.data import dataset
from aejax.errors import UserError


def test_mnist_matches_the_published_facts(mnist):
  train_x, train_y, test_x, test_y = mnist
  assert train_x.shape == (60000, 28, 28, 1) and train_x.dtype == np.uint8
  assert test_x.shape == (10000, 28, 28, 1) and test_y.shape == (10000,)
  np.testing.assert_allclose(train_x.mean(), 33.318, atol=1e-3)
  np.testing.assert_allclose(train_x.std(), 78.567, atol=1e-3)
  np.testing.assert_array_equal(np.bincount(train_y),
                                [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


def test_missing_dataset_without_manual_dir_fails_fast_with_the_fix(tmp_path):
  t0 = time.time()
  with pytest.raises(UserError, match="--manual_dir"):
    dataset.prepare("mnist", str(tmp_path))
  assert time.time() - t0 < 10  # No download attempt, no network retries.


def test_manual_dir_without_the_archives_names_them(tmp_path):
  empty = tmp_path / "archives"
  empty.mkdir()
  with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
    dataset.prepare("mnist", str(tmp_path / "tfds"), manual_dir=str(empty))
  assert not (tmp_path / "tfds" / "mnist").exists() or not any(
      (tmp_path / "tfds" / "mnist").glob("*/dataset_info.json"))
