"""TFDS image datasets other than MNIST, on mock copies (tools/mock_datasets.py: random examples of
each dataset's real features, under its catalog name, version and split names): Fashion-MNIST
(28x28 grey), CIFAR-10 (32x32 RGB) and CelebA (218x178 RGB, no class label, centre-cropped and
resized) each train in both input modes on the same pixels, resume, and are analysed; the view
(crop, resize), the conv size check and the device-memory refusal against independent
computations and as the user meets them (one line, exit 2)."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from aejax.data import views
from aejax.errors import UserError
from conftest import REPO, quick_compile, run_aejax, saved_state

EXAMPLES = 16  # Per split of each mock dataset: two steps of 8.
TINY = ["--config.num_epochs=1", "--config.batch_size=8", "--config.eval_batch_size=8",
        "--config.input_workers=0"]
# name: (experiment, overrides, stored image shape, the model's, splits, has labels).
DATASETS = {
    "fashion_mnist": ("experiments/fashion_mnist_vae.py",
                      ["--config.model.hidden=(16,)", "--config.model.latents=2"],
                      (28, 28, 1), (28, 28, 1), ("train", "test"), True),
    "cifar10": ("experiments/cifar10_conv_vae.py",
                ["--config.model.channels=(4, 8)", "--config.model.latents=4"],
                (32, 32, 3), (32, 32, 3), ("train", "test"), True),
    # celeba_conv_vae.py (CelebA's usual centre crop of 140, its validation split) at a tiny size.
    "celeb_a": ("experiments/celeba_conv_vae.py",
                ["--config.input.resize=(16, 12)", "--config.model.channels=(4, 8)",
                 "--config.model.latents=4"],
                (218, 178, 3), (16, 12, 3), ("train", "validation", "test"), False),
}


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory) -> str:
  data_dir = str(tmp_path_factory.mktemp("mock_tfds"))
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "mock_datasets.py"),
                         data_dir, str(EXAMPLES)], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return data_dir


def test_view_crops_the_centre_and_resizes_with_a_triangle_filter():
  rng = np.random.default_rng(0)
  x_NxHxWxC = rng.integers(0, 256, (2, 9, 6, 2), dtype=np.uint8)
  view = views.View(crop=(4, 4), resize=(2, 2))
  assert view.shape((9, 6, 2)) == (2, 2, 2)
  # Rows (9 - 4) // 2 = 2..5, columns (6 - 4) // 2 = 1..4.
  np.testing.assert_array_equal(views.View(crop=(4, 4))(x_NxHxWxC), x_NxHxWxC[:, 2:6, 1:5])
  # Halving with PIL's antialiased bilinear filter: a triangle of half-width 2 input pixels
  # centred between pixels 2i and 2i + 1, weights 1/4, 3/4, 3/4, 1/4, cut at the border and
  # renormalised (by hand: output 0 reads inputs 0..2 with 3/4, 3/4, 1/4, over 7/4).
  w_2x4 = np.array([[3, 3, 1, 0], [0, 1, 3, 3]], np.float64) / 7
  crop = x_NxHxWxC[:, 2:6, 1:5].astype(np.float64)
  expected = np.einsum("ih,nhwc,jw->nijc", w_2x4, crop, w_2x4)
  got = view(x_NxHxWxC)
  assert got.dtype == np.uint8 and got.shape == (2, 2, 2, 2)
  # PIL filters in 8-bit fixed point: within one grey level of the exact weights.
  np.testing.assert_allclose(got, expected, atol=1.0)
  assert not views.View() and views.View()(x_NxHxWxC) is x_NxHxWxC  # Off: the images unchanged.


@pytest.mark.parametrize("value, expected", [
    (None, None), ((0,), None), ((None,), None), (64, (64, 64)), ((64,), (64, 64)),
    ((64, 48), (64, 48))])
def test_sizes_read_as_the_docs_say(value, expected):
  assert views.size(value, "input.resize") == expected


@pytest.mark.parametrize("value", [(-1,), (64, 48, 3), (6.5,), (True,)])
def test_bad_sizes_are_user_errors(value):
  with pytest.raises(UserError, match="is no image size"):
    views.size(value, "input.resize")
  with pytest.raises(UserError, match="exceeds the 28x28 images"):
    views.View(crop=(29, 28)).shape((28, 28, 1))


def test_device_memory_comes_from_the_environment_then_the_devices_then_the_host(monkeypatch):
  import jax

  from aejax import memory as memory_lib

  monkeypatch.setenv(memory_lib.DEVICE_MEMORY_ENV, "2e3")
  assert memory_lib.device_memory_bytes() == (2000, f"${memory_lib.DEVICE_MEMORY_ENV}")
  monkeypatch.setenv(memory_lib.DEVICE_MEMORY_ENV, "lots")
  with pytest.raises(UserError, match="no positive number of bytes"):
    memory_lib.device_memory_bytes()
  monkeypatch.delenv(memory_lib.DEVICE_MEMORY_ENV)
  # A CPU device reports no limit: the host's physical memory, as /proc/meminfo states it,
  # shared by the CPU devices (tests/test_memory.py: four of them).
  with open("/proc/meminfo") as f:
    total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
  memory, source = memory_lib.device_memory_bytes()
  share = 1024 * total_kb / jax.local_device_count()
  assert source.startswith("host memory") and abs(memory - share) < 0.05 * memory


def _run(name: str, mock_dir: str, workdir: str, *extra: str, env=None):
  experiment, overrides = DATASETS[name][:2]
  return run_aejax(f"--config={experiment}", f"--workdir={workdir}", f"--data_dir={mock_dir}",
                   "--nodownload", f"--config.dataset={name}", *overrides, *TINY, *extra,
                   env=quick_compile(env))


def _records(workdir: str) -> list[dict]:
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


@pytest.mark.parametrize("name", list(DATASETS))
def test_trains_in_both_modes_resumes_and_is_analysed(name, mock_dir, tmp_path):
  from aejax.data import dataset

  _, _, stored, shape, split_names, labelled = DATASETS[name]
  builder_dir = dataset.prepare(name, mock_dir, download=False)
  assert dataset.stored_image_shape(builder_dir) == stored
  for split in split_names:
    images_NxHxWxC, labels_N = dataset.load_split(builder_dir, split)
    assert images_NxHxWxC.shape == (EXAMPLES, *stored) and images_NxHxWxC.dtype == np.uint8
    assert (labels_N is not None) == labelled
  assert (dataset.num_classes(builder_dir) == 10) if labelled else (
      dataset.num_classes(builder_dir) is None)

  runs = {mode: str(tmp_path / mode) for mode in ("device", "stream")}
  for mode, workdir in runs.items():
    proc = _run(name, mock_dir, workdir, f"--config.input_mode={mode}")
    assert proc.returncode == 0, proc.stderr[-3000:]
  device, stream = (saved_state(w)[0] for w in runs.values())
  # The same pixels in both modes (one view for both): the same parameters after the same steps.
  assert int(device["step"]) == int(stream["step"]) == EXAMPLES // 8
  chex.assert_trees_all_close(stream["params"], device["params"], rtol=1e-5, atol=1e-7)
  # The decoder was built for the model's image shape: the MLP's last layer has a location and
  # a log-scale (fashion_mnist_vae.py's discretised logistic) per pixel; the conv pair's first
  # layer feeds a grid a quarter of the image's size, 8 channels.
  decoder = device["params"]["decoder"]
  if name == "fashion_mnist":
    assert decoder["Dense_1"]["bias"].shape == (2 * np.prod(shape),)
  else:
    assert decoder["Dense_0"]["bias"].shape == (shape[0] // 4 * (shape[1] // 4) * 8,)

  # Resume the streamed run for a second epoch: its first epoch's lines stay, a second follows.
  first = _records(runs["stream"])
  proc = _run(name, mock_dir, runs["stream"], "--config.input_mode=stream",
              "--config.num_epochs=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = _records(runs["stream"])
  assert records[:len(first)] == first and records[-1]["epoch"] == 2, records
  assert int(saved_state(runs["stream"])[0]["step"]) == 2 * EXAMPLES // 8

  proc = run_aejax(f"--workdir={runs['device']}", f"--data_dir={mock_dir}", "--nodownload",
                   "--k=2", "--nll_images=8", module="aejax.analyze", env=quick_compile())
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(os.path.join(runs["device"], "analysis", "metrics.json")))
  assert result["test_images"] == EXAMPLES and "auroc_corrupted" in result["metrics"]
  assert ("linear_probe_accuracy" in result["metrics"]) == labelled
  assert result["protocols"]["probes"].startswith("left out") != labelled


def test_user_mistakes_about_sizes_and_memory_are_one_line_exit_2(mock_dir, tmp_path):
  cases = [
      # Resized to 30x30, the images cannot be halved twice; 28 and 32 can.
      (["--config.input.resize=30"], {}, "a height of 28 or 32"),
      # 16 images of 32x32x3 are 49,152 bytes; half of 50,000 is less.
      ([], {"AEJAX_DEVICE_MEMORY_BYTES": "5e4"}, "--config.input_mode=stream"),
  ]
  for overrides, env, expected in cases:
    proc = _run("cifar10", mock_dir, str(tmp_path / "run"), *overrides, env=env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("aejax: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")
