"""aejax/analysis/sample_scores.py (what `aejax.analyze --sample_quality` writes) with a tiny
feature network and stand-in runs whose generated and reconstructed images are known.

Each test names, after "catches:", the change to sample_scores.py it was seen to fail on.
"""

import json
import os
import re
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest

from aejax.analysis import feature_net
from aejax.analysis import sample_scores
from aejax.errors import UserError
from conftest import REPO
from conftest import run_aejax

# Seconds to train on the first 1,000 train images: the metrics' plumbing, not their values.
TINY = feature_net.Recipe(arch="lenet", epochs=1, train_examples=1000)
METRICS = ("fd", "kid", "kid_std", "precision", "recall", "density", "coverage")


@pytest.fixture(scope="module")
def tiny_net(data_dir, tmp_path_factory):
  return feature_net.for_dataset("mnist", data_dir, recipe=TINY,
                                 store_dir=str(tmp_path_factory.mktemp("features")))


def _stand_in_run(decode):
  """An AE-like run (no prior: the ex-post mixture samples it) that reconstructs every image
  exactly and decodes codes with `decode`."""
  config = ml_collections.ConfigDict({"dataset": "mnist", "model": {"name": "ae"}, "input": {}})
  return types.SimpleNamespace(config=config, is_generative=False, decode=decode,
                               reconstruct=lambda x: x)


@pytest.mark.quick
def test_scores_are_named_after_the_network_and_exact_reconstructions_score_perfectly(
    tiny_net, mnist, tmp_path):
  """catches: the reconstructions scored against another subset of test images than the one
  they reconstruct; a floor read from a file of another N; the reconstructed metrics under the
  generated ones' names."""
  train, _, test, _ = mnist
  grey = lambda z_NxZ: np.full((len(z_NxZ), 28, 28, 1), 0.5, np.float32)
  codes_NxZ = np.random.default_rng(0).normal(size=(300, 2))
  x_test = test[:1000].astype(np.float32) / 255.0
  scores = {n: sample_scores.measure(_stand_in_run(grey), tiny_net, train[:1000], test[:1000],
                                     x_test, codes_NxZ, images=n, components=2, seed=0,
                                     out_dir=str(tmp_path))
            for n in (200, 300)}
  net = tiny_net.name
  assert net == "lenet_mnist"
  m = scores[200].metrics
  assert set(m) == {f"{p}{k}_{net}" for p in ("", "rec_") for k in METRICS}
  # Reconstructions equal to the test images they are scored against: the same features, so
  # FD 0 (up to float rounding), every real point inside the other set's balls, and KID
  # near 0 (the unbiased MMD's cross term keeps its i = j pairs, so identical sets of m score
  # -(2/m) x their kernel's mean diagonal-minus-off-diagonal gap, not 0).
  assert abs(m[f"rec_fd_{net}"]) < 1e-3 and abs(m[f"rec_kid_{net}"]) < 0.05 * m[f"kid_{net}"]
  for k in ("precision", "recall", "coverage"):
    assert m[f"rec_{k}_{net}"] == 1.0
  # One grey image, 200 times: far from every digit.
  assert m[f"fd_{net}"] > 10 * max(m[f"rec_fd_{net}"], 1e-3)
  assert m[f"recall_{net}"] < 0.05 and m[f"coverage_{net}"] < 0.05
  record = scores[200].record
  assert record["images"] == 200 and record["sampler"] == "ex_post_gmm"
  assert set(record["floor"]) == {f"{k}_{net}" for k in METRICS}
  # The floor is kept per N: the second N's differs (other images), and its file is another.
  assert record["floor"] != scores[300].record["floor"]
  floors = sorted(f for f in os.listdir(tiny_net.directory) if f.startswith("floor_"))
  assert floors == ["floor_train_test_n200_seed0.json", "floor_train_test_n300_seed0.json"]
  with open(os.path.join(tiny_net.directory, floors[0])) as f:
    assert json.load(f) == record["floor"]
  assert os.path.exists(os.path.join(tmp_path, scores[200].figure))
  assert "200 generated images" in scores[200].protocol


@pytest.mark.quick
def test_fewer_images_than_k_plus_one_are_one_line(tiny_net, mnist, tmp_path):
  """catches: a split of 5 images reaching the k-NN radii (their own error, after the work)."""
  train, _, test, _ = mnist
  with pytest.raises(UserError, match="at least k \\+ 1 = 6") as e:
    sample_scores.measure(_stand_in_run(None), tiny_net, train[:5], test[:5],
                          test[:5].astype(np.float32) / 255.0, np.zeros((5, 2)), images=100,
                          out_dir=str(tmp_path))
  assert "\n" not in str(e.value)


@pytest.mark.quick
@pytest.mark.parametrize("flag, match", [("--sample_images=5", "fewer than k \\+ 1 = 6"),
                                         ("--ex_post_components=-1", "must be >= 0")])
def test_analyze_refuses_impossible_sample_settings_in_one_line(tmp_path, flag, match):
  """catches: the settings checked only after the run is restored and analysed (a folder
  without a run would then fail on that instead)."""
  proc = run_aejax(f"--workdir={tmp_path}", "--sample_quality", flag, module="aejax.analyze")
  lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and re.search(match, lines[0]), lines[0]


@pytest.mark.quick
def test_an_ex_post_sampler_without_the_metrics_is_one_line(tmp_path):
  """catches: --ex_post_sampler accepted and ignored when no sample is drawn."""
  proc = run_aejax(f"--workdir={tmp_path}", "--ex_post_sampler=maf", module="aejax.analyze")
  lines = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  assert "has no effect without --sample_quality" in lines[0], lines[0]


@pytest.mark.quick
def test_compare_points_each_sample_metric_the_better_way():
  """catches: precision and recall read as lower-is-better (their names hold "rec", a
  reconstruction error's word); FD or KID without a direction."""
  from aejax import compare

  want = {"fd": -1, "kid": -1, "precision": 1, "recall": 1, "coverage": 1}
  for key, sign in want.items():
    for prefix in ("", "rec_"):
      assert compare.direction(f"analysis.metrics.{prefix}{key}_lenet_mnist") == sign, key


# aejax.analyze's own main, with the dataset's feature network swapped for TINY stored in
# sys.argv[1] (the default recipe trains for minutes): every other step is the command's.
_ANALYZE_WITH_TINY_NET = """
import sys
from absl import app
from aejax import cli
from aejax.analysis import feature_net, sample_scores
store = sys.argv.pop(1)
sample_scores.feature_network = lambda config, data_dir, *_: feature_net.for_dataset(
    config.dataset, data_dir, recipe=feature_net.Recipe(arch="lenet", epochs=1,
                                                        train_examples=1000), store_dir=store)
from aejax import analyze
app.run(analyze.main, flags_parser=cli.parse_flags)
"""


def test_analyze_writes_the_sample_metrics_of_a_trained_run_and_compare_shows_its_floor(
    data_dir, tmp_path):
  """A real (tiny) AE run through the command: its ex-post mixture sampled, the metrics in
  metrics.json beside the record of how they were made, the report's rows, the figure, and
  compare's floor row from that record. Catches: the metrics left out of metrics.json (the hook
  computing them but not merging them); the record or the protocol not written."""
  workdir = str(tmp_path / "ae")
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={workdir}",
                   f"--data_dir={data_dir}", "--config.num_epochs=1",
                   "--config.model.hidden=(32,)", "--config.model.latents=4")
  assert proc.returncode == 0, proc.stderr[-3000:]

  def analyze(sampler_flag: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _ANALYZE_WITH_TINY_NET, str(tmp_path / "features"),
         f"--workdir={workdir}", f"--data_dir={data_dir}", "--sample_quality",
         "--sample_images=300", sampler_flag, "--probe_examples=200"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, "analysis", "metrics.json")) as f:
      return json.load(f)

  result = analyze("--ex_post_components=3")
  net = "lenet_mnist"
  for prefix in ("", "rec_"):
    for key in METRICS:
      assert np.isfinite(result["metrics"][f"{prefix}{key}_{net}"]), (prefix, key)
  record = result["sample_quality"]
  assert record["images"] == 300 and record["sampler"] == "ex_post_gmm"
  assert record["network"] == net and set(record["floor"]) == {f"{k}_{net}" for k in METRICS}
  assert "300 generated images" in result["protocols"]["sample_quality"]
  assert "quality_samples.png" in result["figures"]
  assert os.path.exists(os.path.join(workdir, "analysis", "quality_samples.png"))
  with open(os.path.join(workdir, "analysis", "report.md")) as f:
    assert f"| `fd_{net}` |" in f.read()
  proc = run_aejax(workdir, f"--metric=analysis.metrics.fd_{net}", module="aejax.compare")
  assert proc.returncode == 0, proc.stderr[-3000:]
  floor_row = next(l for l in proc.stdout.splitlines() if "real floor" in l)
  cells = [c.strip() for c in floor_row.strip("|").split("|")]
  assert cells[0] == "real floor: 300 train vs 300 test images"
  assert float(cells[2]) == pytest.approx(record["floor"][f"fd_{net}"], rel=1e-3)
  # The flow sampler instead of the mixture: the same command, its own record and protocol.
  flow = analyze("--ex_post_sampler=maf")
  assert flow["sample_quality"]["sampler"] == "ex_post_maf"
  assert "masked autoregressive flow" in flow["protocols"]["sample_quality"]
  assert np.isfinite(flow["metrics"][f"fd_{net}"])
