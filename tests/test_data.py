"""The real MNIST, as TFDS prepares it from the original archives."""

import collections
import gzip
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from aejax.data import dataset
from aejax.errors import UserError
from aejax.run import storage
from conftest import REPO, run_aejax

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def test_mnist_matches_the_published_facts(mnist):
  train_x, train_y, test_x, test_y = mnist
  assert train_x.shape == (60000, 28, 28, 1) and train_x.dtype == np.uint8
  assert test_x.shape == (10000, 28, 28, 1) and test_y.shape == (10000,)
  np.testing.assert_allclose(train_x.mean(), 33.318, atol=1e-3)
  np.testing.assert_allclose(train_x.std(), 78.567, atol=1e-3)
  np.testing.assert_array_equal(np.bincount(train_y),
                                [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


ARCHIVES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
  """`code` in a fresh process (TensorFlow, which TFDS imports to prepare, stays out of this one)."""
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, **env}, timeout=120)


def test_the_first_command_on_a_host_without_internet_fails_within_seconds_naming_the_fix(
    tmp_path):
  # The network is made unreachable by a proxy that accepts connections and never answers: what
  # a firewalled host's proxy does, and the case where TFDS's own downloader hangs for minutes.
  black_hole = socket.socket()
  black_hole.bind(("127.0.0.1", 0))
  black_hole.listen(16)
  proxy = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
  env = {"TFDS_DATA_DIR": str(tmp_path / "tfds"), "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy,
         "https_proxy": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
  t0 = time.time()
  try:
    # The README's first training command, as typed.
    proc = run_aejax("--config=experiments/vae.py", f"--workdir={tmp_path / 'vae'}", env=env,
                     timeout=60)
  finally:
    black_hole.close()
  seconds = time.time() - t0
  assert proc.returncode == 2, proc.stderr
  assert seconds < 10, seconds
  errors = [line for line in proc.stderr.splitlines() if line.startswith("aejax:")]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "--manual_dir" in errors[0] and all(name in errors[0] for name in ARCHIVES), errors
  assert "storage.googleapis.com" in errors[0], errors  # The host TFDS downloads MNIST from.


def test_without_manual_dir_tfds_downloads_with_its_own_default_configuration(tmp_path):
  # The host answers (stubbed): prepare hands the download to TFDS exactly as `tfds.load` would,
  # no DownloadConfig of its own, after probing the host of the URLs TFDS registered for MNIST.
  code = f"""
import requests
from tensorflow_datasets.core import dataset_builder
from aejax.data import dataset

probed = []
requests.head = lambda url, **kw: probed.append(url)
def download_and_prepare(self, download_config=None, **kw):
  print("download_config:", download_config)
  print("probed:", probed)
  raise SystemExit(0)
dataset_builder.DatasetBuilder.download_and_prepare = download_and_prepare
dataset.prepare("mnist", {str(tmp_path)!r})
"""
  proc = _python(code, {})
  assert proc.returncode == 0, proc.stderr
  assert "download_config: None" in proc.stdout, proc.stdout
  assert "probed: ['https://storage.googleapis.com/cvdf-datasets/mnist/" in proc.stdout, proc.stdout


def test_nodownload_never_goes_to_the_network_and_names_the_fix(tmp_path):
  code = f"""
import requests
from aejax.data import dataset
from aejax.errors import UserError
requests.head = lambda *a, **k: print("probed the network")
try:
  dataset.prepare("mnist", {str(tmp_path)!r}, download=False)
except UserError as e:
  print("error:", e)
"""
  proc = _python(code, {})
  assert "probed" not in proc.stdout, proc.stdout
  assert "error:" in proc.stdout and "--nodownload" in proc.stdout, proc.stdout
  assert "--manual_dir" in proc.stdout and all(name in proc.stdout for name in ARCHIVES)


def test_manual_dir_without_the_archives_names_them(tmp_path):
  empty = tmp_path / "archives"
  empty.mkdir()
  with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
    dataset.prepare("mnist", str(tmp_path / "tfds"), manual_dir=str(empty))
  assert not (tmp_path / "tfds" / "mnist").exists() or not any(
      (tmp_path / "tfds" / "mnist").glob("*/dataset_info.json"))


def _archive_split(manual_dir, prefix):
  """(images bytes, label) pairs of an original MNIST archive pair, read with numpy (idx: a
  16-byte header before the images, 8 bytes before the labels)."""
  with gzip.open(os.path.join(manual_dir, f"{prefix}-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28 * 28)
  with gzip.open(os.path.join(manual_dir, f"{prefix}-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
  return collections.Counter(zip(map(bytes, images), labels.tolist()))


def test_decoded_copy_holds_the_archives_images_and_is_rebuilt_when_stale_or_damaged(
    data_dir, request, tmp_path, monkeypatch, caplog):
  manual_dir = request.config.getoption("manual_dir")
  if not manual_dir:
    pytest.skip("compares with the original archives: pass --manual_dir")
  builder_dir = tmp_path / "mnist"  # A copy, so the shared prepared MNIST is never touched.
  shutil.copytree(dataset.prepare("mnist", data_dir), builder_dir,
                  ignore=shutil.ignore_patterns(dataset.DECODED_DIR))
  cache_dir = builder_dir / dataset.DECODED_DIR

  images, labels = dataset.load_split(str(builder_dir), "test")  # Decoded by TFDS, then kept.
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  # TFDS shuffles the examples while preparing: the same (image, label) pairs, in another order.
  assert collections.Counter(zip(map(bytes, images.reshape(10000, -1)), labels.tolist())) == (
      _archive_split(manual_dir, "t10k"))
  (kept,) = os.listdir(cache_dir)

  from tensorflow_datasets.core import read_only_builder

  def no_decoding(*args, **kwargs):
    raise AssertionError("decoded although a decoded copy exists")

  with monkeypatch.context() as m:
    m.setattr(read_only_builder.ReadOnlyBuilder, "as_data_source", no_decoding)
    again = dataset.load_split(str(builder_dir), "test")
  np.testing.assert_array_equal(again[0], images)
  np.testing.assert_array_equal(again[1], labels)

  (cache_dir / kept).write_bytes((cache_dir / kept).read_bytes()[:1000])  # Cut off.
  caplog.set_level("WARNING")
  damaged = dataset.load_split(str(builder_dir), "test")
  assert "Ignoring the unreadable decoded copy" in caplog.text
  np.testing.assert_array_equal(damaged[0], images)
  assert os.listdir(cache_dir) == [kept] and (cache_dir / kept).stat().st_size > 7_000_000

  shard = next(builder_dir.glob("mnist-test.array_record-*"))
  os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
  dataset.load_split(str(builder_dir), "test")  # Prepared again (the files changed): new copy.
  assert len(os.listdir(cache_dir)) == 2

  shutil.rmtree(cache_dir)
  cache_dir.write_text("")  # A data dir that cannot take the copy still loads, with a warning.
  unkept = dataset.load_split(str(builder_dir), "test")
  np.testing.assert_array_equal(unkept[0], images)
  assert "Could not keep the decoded" in caplog.text


def test_a_decoded_copy_that_does_not_fit_the_split_is_rebuilt_and_killed_writers_temps_go(
    data_dir, tmp_path, caplog, monkeypatch):
  """Mutations: without the check in load_split, without its storage.remove_killed_temps, or
  without DECODED_FORMAT in the key, this fails."""
  builder_dir = tmp_path / "mnist"  # A copy, so the shared prepared MNIST is never touched.
  shutil.copytree(dataset.prepare("mnist", data_dir), builder_dir,
                  ignore=shutil.ignore_patterns(dataset.DECODED_DIR))
  images, labels = dataset.load_split(str(builder_dir), "test")
  (kept,) = (builder_dir / dataset.DECODED_DIR).iterdir()
  assert kept.name.startswith("test-") and kept.name.endswith(".npz")
  caplog.set_level("WARNING")
  wrong = {"shape": (images[:, :, :27], labels, "images uint8[10000, 28, 27, 1], the split has "
                     "uint8[10000, 28, 28, 1]"),
           "dtype": (images.astype(np.float32), labels, "images float32[10000, 28, 28, 1]"),
           "count": (images[:9999], labels[:9999], "images uint8[9999, 28, 28, 1]"),
           "labels": (images, labels.astype(np.int64), "labels int64[10000], the split has "
                      "int32[10000]")}
  for name, (bad_images, bad_labels, message) in wrong.items():
    with open(kept, "wb") as f:
      np.savez(f, images=bad_images, labels=bad_labels)
    caplog.clear()
    again = dataset.load_split(str(builder_dir), "test")
    assert f"Ignoring the unreadable decoded copy {kept} ({message}" in caplog.text, name
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)
    with np.load(kept) as rebuilt:  # Written afresh, right.
      np.testing.assert_array_equal(rebuilt["images"], images)

  # A killed writer of this host (its pid is gone), and one of another host, long ago: removed.
  # A live writer's (this process) stays.
  dead = subprocess.Popen(["true"])
  dead.wait()
  host = socket.gethostname()
  temps = {"dead": f"{kept}.{host}.{dead.pid}.tmp", "old": f"{kept}.other.host.7.tmp",
           "live": f"{kept}.{host}.{os.getpid()}.tmp"}
  for path in temps.values():
    with open(path, "wb") as f:
      f.write(b"\0" * 1000)
  os.utime(temps["old"], (0, time.time() - 2 * storage.STALE_TEMP_SECONDS))
  dataset.load_split(str(builder_dir), "test")
  assert sorted(os.listdir(kept.parent)) == sorted([kept.name, os.path.basename(temps["live"])])

  monkeypatch.setattr(dataset, "DECODED_FORMAT", "another layout")  # Never read as this one.
  dataset.load_split(str(builder_dir), "test")
  assert len([n for n in os.listdir(kept.parent) if n.endswith(".npz")]) == 2


def test_a_split_slice_reads_exactly_those_examples_of_its_split(data_dir, mnist):
  train_x, train_y, _, _ = mnist
  builder_dir = dataset.prepare("mnist", data_dir)
  assert dataset.num_examples(builder_dir, "train[:90%]") == 54000
  held_x, held_y = dataset.load_split(builder_dir, "train[90%:]")
  np.testing.assert_array_equal(held_x, train_x[54000:])
  np.testing.assert_array_equal(held_y, train_y[54000:])
  with pytest.raises(UserError, match="config.input.test_split='tset' is no split of mnist"):
    dataset.num_examples(builder_dir, "tset", "config.input.test_split")
