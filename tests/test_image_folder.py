"""A folder of your own images, end to end: the 1,797 8x8 digits scikit-learn ships, written as PNG
class folders, prepared by TFDS's image-folder builder (aejax.prepare_folder), then trained,
analysed and swept by the same commands as MNIST."""

import json
import os

import numpy as np
import pytest

from conftest import run_aejax

NUM_TRAIN = 1500  # Of the 1,797 digits; the other 297 are the test split.
SMALL_AE = ["--config=experiments/mlp_ae.py", "--config.model.hidden=(64,)",
            "--config.model.latents=8", "--config.num_epochs=10", "--config.batch_size=50"]


def _write_pngs(root, images_NxHxW: np.ndarray, labels_N: np.ndarray, split_at: int) -> None:
  from PIL import Image

  for i, (image, label) in enumerate(zip(images_NxHxW, labels_N)):
    folder = root / ("train" if i < split_at else "test") / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  """(data_dir, train images uint8 [N, 8, 8], test images) with the dataset `digits` prepared."""
  from sklearn.datasets import load_digits

  raw = load_digits()
  images = np.clip(raw.images * 16, 0, 255).astype(np.uint8)  # 0..16 grey levels -> 0..255.
  root = tmp_path_factory.mktemp("digits")
  _write_pngs(root / "images", images, raw.target, NUM_TRAIN)
  data_dir = str(root / "tfds")
  proc = run_aejax(f"--folder={root / 'images'}", "--name=digits", "--channels=1",
                   f"--data_dir={data_dir}", module="aejax.prepare_folder", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return data_dir, images[:NUM_TRAIN], images[NUM_TRAIN:], raw.target


def test_the_prepared_dataset_holds_exactly_the_images_and_labels_of_the_folder(digits):
  from aejax.data import dataset

  data_dir, train, test, target = digits
  builder_dir = dataset.prepare("digits", data_dir, download=False)
  for split, written, labels in (("train", train, target[:NUM_TRAIN]),
                                 ("test", test, target[NUM_TRAIN:])):
    images_NxHxWxC, labels_N = dataset.load_split(builder_dir, split)
    assert images_NxHxWxC.shape == (len(written), 8, 8, 1)
    # The stored order is TFDS's; the same images with the same labels in any order.
    key = lambda x, y: sorted(zip(map(bytes, x.reshape(len(x), -1)), y.tolist()))
    assert key(images_NxHxWxC, labels_N) == key(written, labels)


def test_own_images_train_beyond_the_best_constant_analyse_and_sweep(digits, tmp_path):
  data_dir, train, test, _ = digits
  workdir = str(tmp_path / "ae")
  proc = run_aejax(*SMALL_AE, f"--workdir={workdir}", "--config.dataset=digits",
                   f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))][-1]
  # The best constant prediction of every test image: the mean training image.
  mean = train.astype(np.float64).mean(0) / 255
  constant = np.mean(np.sum((test / 255 - mean) ** 2, axis=(1, 2)))
  assert final["split"] == "test" and final["sq_err"] < 0.7 * constant, (final, constant)

  proc = run_aejax(f"--workdir={workdir}", f"--data_dir={data_dir}", module="aejax.analyze")
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))["metrics"]
  assert metrics["linear_probe_accuracy"] > 0.3  # Ten classes: chance is 0.1.

  sweep = str(tmp_path / "sweep")
  proc = run_aejax(*SMALL_AE, f"--workdir={sweep}", "--config.dataset=digits",
                   f"--data_dir={data_dir}", "--sweep=seed=0,1", "--vectorize",
                   module="aejax.sweep")
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_aejax(sweep, module="aejax.compare")
  assert proc.returncode == 0 and "| 2 |" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("case, expected", [
    ("no_test", "has no test/ sub-folder"),
    ("two_sizes", "resize the images"),
    ("bad_name", "must be a TFDS dataset name"),
    ("catalog_name", "is a dataset of the TFDS catalog"),
])
def test_a_folder_that_cannot_be_prepared_is_one_line_exit_2(tmp_path, case, expected):
  images = np.zeros((4, 8, 8), np.uint8)
  _write_pngs(tmp_path / "images", images, np.array([0, 1, 0, 1]), 2 if case != "no_test" else 4)
  if case == "two_sizes":
    from PIL import Image
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "images" / "test" / "1" / "x.png")
  name = {"bad_name": "My-Images", "catalog_name": "mnist"}.get(case, "mine")
  proc = run_aejax(f"--folder={tmp_path / 'images'}", f"--name={name}", "--channels=1",
                   f"--data_dir={tmp_path / 'tfds'}", module="aejax.prepare_folder", timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("aejax: error:")]
  assert len(errors) == 1 and expected in errors[0] and "Traceback" not in proc.stderr, errors
