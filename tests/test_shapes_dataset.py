"""The dSprites-like shapes dataset (aejax/data/shapes.py, aejax.prepare_shapes) on a grid of 3
shapes x 2 scales x 4 orientations x 8 x 8 positions (1,536 images): its order, its pixels
against the documented rasterisation rule computed here another way, its colour and noisy
variants, reading it back as any prepared dataset and as the metrics' ground-truth source, and
the study's models (experiments/dsprites_*.py) training on it.

Time: every experiments/dsprites_*.py file trains on the prepared grid (six conv trainings), and the
analysis of one of them scores the disentanglement metrics at the sizes it states.
"""

import glob
import itertools
import math
import os

import numpy as np
import pytest

from conftest import REPO, run_aejax

GRID = "3,2,4,8,8"
SIZES = (3, 2, 4, 8, 8)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, {variant: builder_dir}) with the three variants of GRID prepared by the command."""
  data_dir = str(tmp_path_factory.mktemp("shapes"))
  dirs = {}
  for variant in ("binary", "color", "noisy"):
    proc = run_aejax(f"--data_dir={data_dir}", f"--variant={variant}", f"--grid={GRID}",
                     module="aejax.prepare_shapes", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = "shapes2d" + ("" if variant == "binary" else f"_{variant}") + "_3x2x4x8x8"
    assert f"--config.dataset={name}" in proc.stdout, proc.stdout
    dirs[variant] = os.path.join(data_dir, name, "1.0.0")
  return data_dir, dirs


def _read(builder_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(images, factors, factor values) of every stored example, in stored order."""
  import tensorflow_datasets as tfds

  source = tfds.builder_from_directory(builder_dir).as_data_source(split="train")
  examples = source.__getitems__(range(len(source)))
  return tuple(np.stack([ex[k] for ex in examples])
               for k in ("image", "factors", "factor_values"))


def test_every_factor_combination_appears_once_in_factor_order(prepared):
  """catches: TFDS's default shuffling of the stored examples (disable_shuffling=False), and a
  grid subset taken with the wrong stride (`values[::count]`)."""
  _, factors, values = _read(prepared[1]["binary"])
  expected = np.array(list(itertools.product(*map(range, SIZES))))
  np.testing.assert_array_equal(factors, expected)
  # The factor values by hand: every 3rd of 6 scales, every 10th of 40 orientations (step
  # 2 pi / 39), every 4th of 32 positions (step 1 / 31).
  by_hand = [[0, 1, 2], [0.5, 0.8], [2 * math.pi * k / 39 for k in (0, 10, 20, 30)],
             [4 * k / 31 for k in range(8)], [4 * k / 31 for k in range(8)]]
  for k, hand in enumerate(by_hand):
    np.testing.assert_allclose(values[:, k], np.asarray(hand)[factors[:, k]], rtol=1e-6)


def _centres() -> tuple[np.ndarray, np.ndarray]:
  """Pixel centres (x, y) of the 64 x 64 image, [64 * 64] each in row-major pixel order."""
  y, x = np.mgrid[0:64, 0:64] + 0.5
  return x.ravel(), y.ravel()


def _rotated_square(cx, cy, half, t) -> np.ndarray:
  """Inside the square as a polygon (matplotlib's point-in-polygon), its corners turned by t."""
  from matplotlib.path import Path

  corners = [(cx + math.cos(t) * u - math.sin(t) * v, cy + math.sin(t) * u + math.cos(t) * v)
             for u, v in ((-half, -half), (half, -half), (half, half), (-half, half))]
  return Path(corners).contains_points(np.stack(_centres(), 1)).reshape(64, 64)


def _rotated_ellipse(cx, cy, a, b, t) -> np.ndarray:
  """Inside the ellipse by its polar radius: the distance of a pixel centre from the centre is at
  most a b / sqrt((b cos phi)^2 + (a sin phi)^2), phi its angle from the long axis."""
  x, y = _centres()
  phi = np.arctan2(y - cy, x - cx) - t
  radius = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
  return (np.hypot(x - cx, y - cy) <= radius).reshape(64, 64)


def test_a_square_is_on_exactly_the_pixels_worked_out_by_hand(prepared):
  """catches: the position range shifted (`16 + 31 * x`), the square's half side (`11 * s`), x
  and y swapped, and a fill test at pixel corners (no `+ 0.5`)."""
  images, factors, _ = _read(prepared[1]["binary"])
  # Square, scale 0.8, orientation 0, x position 0, y position 28/31: centre (16, 44.9), half
  # side 8, so centres x in [8, 24] (columns 8 .. 23) and y in [36.9, 52.9] (rows 37 .. 52).
  (n,) = np.flatnonzero((factors == (0, 1, 0, 0, 7)).all(1))
  expected = np.zeros((64, 64), np.uint8)
  expected[37:53, 8:24] = 255
  np.testing.assert_array_equal(images[n, :, :, 0], expected)
  assert images[n, 37, 8, 0] == images[n, 52, 23, 0] == 255  # The corner pixels.
  assert images[n, 36, 8, 0] == images[n, 37, 7, 0] == images[n, 53, 23, 0] == 0

  from aejax.data import shapes

  # The full grid: square, scale 1, orientation 0, (x, y) = (0, 1) and (1, 0): centres (16, 48)
  # and (48, 16), half side 10.
  low_left, top_right = shapes.render(np.array([[0, 5, 0, 0, 31], [0, 5, 0, 31, 0]]))
  expected = np.zeros((64, 64), bool)
  expected[38:58, 6:26] = True
  np.testing.assert_array_equal(low_left, expected)
  np.testing.assert_array_equal(top_right, expected.T)


@pytest.mark.parametrize("factors", [(0, 1, 1, 3, 5), (0, 0, 2, 6, 1), (0, 1, 3, 7, 0),
                                     (1, 1, 1, 2, 6), (1, 0, 3, 5, 3), (1, 1, 2, 0, 0)])
def test_rotated_squares_and_ellipses_match_the_rule_computed_otherwise(prepared, factors):
  """catches: the turn in the other direction (`-sin` and `+sin` swapped), the ellipse's axes
  swapped (12 s along v), and an orientation grid without its end value (linspace(0, 2 pi, 40,
  endpoint=False))."""
  images, stored, values = _read(prepared[1]["binary"])
  (n,) = np.flatnonzero((stored == factors).all(1))
  shape, s, t, x, y = values[n].astype(np.float64)
  cx, cy = 16 + 32 * x, 16 + 32 * y
  assert t == pytest.approx(2 * math.pi * 10 * factors[2] / 39)
  expected = (_rotated_square(cx, cy, 10 * s, t) if shape == 0 else
              _rotated_ellipse(cx, cy, 12 * s, 6 * s, t))
  np.testing.assert_array_equal(images[n, :, :, 0] > 0, expected)
  assert expected.sum() > 40  # A shape, not an empty image.


def test_the_heart_is_mirror_symmetric_with_its_tip_below_its_centre():
  """catches: the heart upside down (q = v), its unit (`8 * s`), and the heart on its side (p and
  q swapped)."""
  from aejax.data import shapes

  # Heart, scale 1, orientation 0, x 0, y 0: centre (16, 16), unit 9 px.
  heart = shapes.render(np.array([[2, 5, 0, 0, 0]]))[0]
  np.testing.assert_array_equal(heart, heart[:, ::-1][:, np.r_[32:64, 0:32]])  # About x = 16.
  rows, columns = np.flatnonzero(heart.any(1)), np.flatnonzero(heart.any(0))
  # The curve (p^2 + q^2 - 1)^3 = p^2 q^3 spans q in [-1, 1.25] (its tip at q = -1, 9 px below the
  # centre) and p in [-1.14, 1.14]: y in [4.75, 25] and x in [5.75, 26.25], so rows 5 .. 24 and
  # columns 6 .. 25 at most; the tip is a cusp, narrower than a pixel at y = 24.5.
  assert (rows.min(), rows.max(), columns.min(), columns.max()) == (5, 23, 6, 25)
  assert heart[23, 14:18].all() and not heart[23, 13] and not heart[23, 18]  # Near the tip.
  # The notch: the curve meets its axis at q = 1 (y = 7), the lobes rise beside it.
  assert not heart[5, 15] and not heart[5, 16] and heart[5, 10] and heart[6, 15]


def test_the_first_and_last_orientation_draw_the_same_image():
  """catches: an orientation grid that stops short of 2 pi."""
  from aejax.data import shapes

  for shape in range(3):
    first, last = shapes.render(np.array([[shape, 5, 0, 9, 20], [shape, 5, 39, 9, 20]]))
    np.testing.assert_array_equal(first, last)


def test_the_color_and_noisy_variants_keep_the_factors_and_the_shapes(prepared):
  """catches: colours drawn from [0, 1) (a dark shape is lost in the background), and noise up
  to 255 (a background pixel reads as shape)."""
  binary, factors, values = _read(prepared[1]["binary"])
  mask = binary[..., 0] == 255
  color, color_factors, _ = _read(prepared[1]["color"])
  noisy, noisy_factors, noisy_values = _read(prepared[1]["noisy"])
  np.testing.assert_array_equal(color_factors, factors)
  np.testing.assert_array_equal(noisy_factors, factors)
  np.testing.assert_array_equal(noisy_values, values)
  assert color.shape == noisy.shape == (len(factors), 64, 64, 3)

  np.testing.assert_array_equal(color.max(-1) > 0, mask)
  np.testing.assert_array_equal(color.min(-1) >= 128, mask)
  on = color[mask.nonzero()]  # Every shape pixel of an image has that image's one colour.
  per_image = [color[n][mask[n]] for n in range(len(color))]
  assert all((p == p[0]).all() for p in per_image)
  assert on.min() >= 128 and np.std([p[0] for p in per_image], axis=0).min() > 10

  np.testing.assert_array_equal((noisy == 255).all(-1), mask)
  background = noisy[~mask]
  assert background.max() == 254 and background.min() == 0
  # Uniform on 0 .. 254: mean 127, standard deviation 73.6.
  assert abs(background.mean() - 127) < 1 and abs(background.std() - 73.6) < 1


def test_the_stored_dataset_reads_back_like_any_other_and_as_a_ground_truth_source(prepared):
  """catches: a factor index mapped to the wrong example (factor order reversed in
  `index_of`), and a grid read with one factor too few."""
  from aejax.analysis.disentanglement import factor_dataset
  from aejax.data import dataset
  from aejax.data import shapes

  data_dir, dirs = prepared
  builder_dir = dataset.prepare("shapes2d_3x2x4x8x8", data_dir, download=False)
  assert os.path.samefile(builder_dir, dirs["binary"])
  images, labels = dataset.load_split(builder_dir, "train")
  assert labels is None and not dataset.has_labels(builder_dir)
  assert dataset.stored_image_shape(builder_dir) == (64, 64, 1)
  _, factors, _ = _read(builder_dir)
  np.testing.assert_array_equal(images[..., 0] > 0, shapes.render(factors, SIZES))

  source = factor_dataset.FactorSource(builder_dir)
  assert tuple(source.factors_num_values) == SIZES
  rng = np.random.RandomState(0)
  drawn = source.sample_factors(500, rng)
  assert drawn.shape == (500, 5) and all(len(np.unique(drawn[:, k])) == v
                                         for k, v in enumerate(SIZES))
  observed = source.sample_observations_from_factors(drawn[:50], rng)
  for f, image in zip(drawn[:50], observed):
    (n,) = np.flatnonzero((factors == f).all(1))
    np.testing.assert_array_equal(image, images[n])


def test_cached_codes_encode_each_image_once_and_give_the_same_scores(prepared, monkeypatch):
  """Every metric on the stored images through a representation, and on their indices through
  CachedCodes of that representation, lazy and eager: the same scores, with each image encoded
  at most once (eager: all of them, in chunks, up front).
  catches: a batch's new codes stored under each other's indices (in reversed order); an eager
  chunk's codes stored at the first chunk's indices."""
  from aejax.analysis import disentanglement
  from aejax.analysis.disentanglement import factor_dataset

  source = factor_dataset.FactorSource(prepared[1]["binary"])
  projection = np.random.default_rng(0).normal(size=(64 * 64, 6)) / 64
  calls = []

  def represent(images):
    calls.append(len(images))
    # Summed row by row, so a code does not depend on the images beside it.
    flat = images.reshape(len(images), -1, 1).astype(np.float64) / 255
    return np.tanh(np.sum(flat * projection[None], axis=1))

  sizes = {"beta_vae": {"num_train": 60, "num_eval": 30}, "factor_vae": {
      "num_train": 60, "num_eval": 30, "num_variance_estimate": 200}, "mig": {"num_train": 300},
           "dci": {"num_train": 200, "num_test": 100}, "sap": {"num_train": 200, "num_test": 100},
           "modularity_explicitness": {"num_train": 200, "num_test": 100}}
  plain = disentanglement.all_metrics(source, represent, 5, sizes)
  drawn = sum(calls)
  codes = factor_dataset.CachedCodes(source, represent)
  cached = disentanglement.all_metrics(factor_dataset.IndexedFactors(source), codes, 5, sizes)
  assert cached == plain
  assert codes.encoded <= np.prod(SIZES) < drawn, (codes.encoded, drawn)
  # Eager: the whole grid in chunks, in index order, before the first draw; nothing after.
  calls.clear()
  monkeypatch.setattr(factor_dataset.CachedCodes, "CHUNK", 500)
  codes = factor_dataset.CachedCodes(source, represent, eager=True)
  eager = disentanglement.all_metrics(factor_dataset.IndexedFactors(source), codes, 5, sizes)
  assert eager == plain
  assert calls == [500, 500, 500, 36] and codes.encoded == np.prod(SIZES) == 1536


def test_a_run_encodes_the_whole_grid_when_the_beta_vae_score_draws_as_many_points():
  """The beta-VAE score draws 2 x 64 x (10000 + 5000) = 1,920,000 points at scale 1 and
  2 x 64 x (100 + 50) = 19,200 at 0.01 (worked out by hand).
  catches: the bound taken from the train points only, or without the pair's factor 2."""
  from aejax.analysis.disentanglement import report

  assert report.encodes_whole_grid(46080, 1.0) and report.encodes_whole_grid(737280, 1.0)
  assert report.encodes_whole_grid(1920000, 1.0) and not report.encodes_whole_grid(1920001, 1.0)
  assert report.encodes_whole_grid(19200, 0.01) and not report.encodes_whole_grid(19201, 0.01)


def test_a_dataset_without_factors_is_no_ground_truth_source(data_dir):
  """catches: a source built from a dataset without a `factors` feature."""
  from aejax.analysis.disentanglement import factor_dataset
  from aejax.analysis.disentanglement import MetricInputError
  from aejax.data import dataset

  with pytest.raises(MetricInputError, match="no ground-truth factors.*aejax.prepare_shapes"):
    factor_dataset.FactorSource(dataset.prepare("mnist", data_dir, download=False))


@pytest.mark.parametrize("args, words", [
    (["--grid=3,2,4,8,5"], "5 y_position values do not divide the full grid's 32"),
    (["--grid=3,6,40,32"], "five counts"),
    (["--grid=tiny"], "neither full nor small"),
    (["--variant=colour"], "'colour' is not one of binary, color, noisy"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
  """catches: a grid count that does not divide the full grid taken anyway."""
  proc = run_aejax(f"--data_dir={tmp_path}", *args, module="aejax.prepare_shapes", timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  (line,) = proc.stderr.strip().splitlines()[-1:]
  assert line.startswith("aejax: error: ") and words in line, proc.stderr
  assert os.listdir(tmp_path) == []


def test_a_prepared_dataset_is_never_overwritten(prepared):
  """catches: preparing again over a prepared dataset."""
  data_dir, dirs = prepared
  before = sorted(os.listdir(dirs["binary"]))
  proc = run_aejax(f"--data_dir={data_dir}", f"--grid={GRID}", module="aejax.prepare_shapes")
  assert proc.returncode == 2 and "already holds a prepared" in proc.stderr.splitlines()[-1]
  assert sorted(os.listdir(dirs["binary"])) == before


DSPRITES = sorted(glob.glob(os.path.join(REPO, "experiments", "dsprites_*.py")))
VAE_FILE = os.path.join(REPO, "experiments", "dsprites_vae.py")


def _train_shrunk(path: str, workdir: str, data_dir: str) -> None:
  """One model of the study's table, shrunk (conv widths 4, 4, 8, 8, dense 16), trains one epoch
  (24 steps of 64) of the binary grid and evaluates to finite test metrics."""
  import json

  from aejax import train
  from aejax.configs import load_experiment

  config = load_experiment(path)
  assert config.model.channels == (32, 32, 64, 64) and config.model.conv_dense == (256,)
  config.dataset, config.num_epochs = "shapes2d_3x2x4x8x8", 1
  config.model.channels, config.model.conv_dense = (4, 4, 8, 8), (16,)
  config.eval_batch_size = 512
  state = train.train_and_evaluate(config, workdir, data_dir=data_dir)
  assert int(state.step) == 1536 // 64
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    test = [line for line in map(json.loads, f) if line["split"] == "test"][-1]
  assert all(np.isfinite(v) for k, v in test.items() if k not in ("step", "epoch", "split")), test


@pytest.fixture(scope="module")
def shapes_vae(prepared, tmp_path_factory):
  """The shrunk VAE of experiments/dsprites_vae.py, trained once for the analyses below."""
  workdir = str(tmp_path_factory.mktemp("dsprites_vae"))
  _train_shrunk(VAE_FILE, workdir, prepared[0])
  return workdir


@pytest.mark.parametrize("path", DSPRITES, ids=lambda p: os.path.basename(p)[:-3])
def test_each_dsprites_file_trains_on_the_prepared_grid(prepared, path, tmp_path, request):
  """_train_shrunk for each file; the VAE's is the module's run (shapes_vae)."""
  if path == VAE_FILE:
    request.getfixturevalue("shapes_vae")
  else:
    _train_shrunk(path, str(tmp_path), prepared[0])


# The flat names analyze gives all_metrics' scores (the reference's "metric/score" keys).
DISENTANGLEMENT_NAMES = {
    "beta_vae_accuracy", "beta_vae_train_accuracy", "factor_vae_accuracy",
    "factor_vae_train_accuracy", "factor_vae_active_dims", "mig", "dci_disentanglement",
    "dci_completeness", "dci_informativeness", "dci_informativeness_train", "sap", "modularity",
    "explicitness", "explicitness_train"}
SEED = 3
TEST_IMAGES = 300  # Of the grid's 1,536, which the shapes configs score as their test split.


@pytest.fixture(scope="module")
def shapes_analysis(shapes_vae, prepared):
  """analyze --disentanglement of the module's run at 0.01 of the reference's sizes, seed 3."""
  import json

  proc = run_aejax(f"--workdir={shapes_vae}", f"--data_dir={prepared[0]}", "--disentanglement",
                   "--disentanglement_scale=0.01", f"--seed={SEED}", "--k=10",
                   "--nll_images=100", f"--test_images={TEST_IMAGES}", module="aejax.analyze",
                   timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(shapes_vae, "analysis", "metrics.json")) as f:
    return json.load(f)


def test_analyze_scores_the_encoder_means_at_the_seed_and_sizes_it_states(
    shapes_vae, shapes_analysis, prepared):
  """Every score under its flat name, equal to the metrics computed here on the restored run's
  posterior means at the stated sizes and seed; the protocol states both.
  catches: the seed not passed on (seed 0 used), the scale applied to the batch sizes, a
  posterior sample as the code, a score left out."""
  import aejax
  from aejax.analysis import disentanglement
  from aejax.analysis.disentanglement import factor_dataset

  m = shapes_analysis["metrics"]
  assert DISENTANGLEMENT_NAMES <= set(m), sorted(set(m))
  run = aejax.restore(shapes_vae, data_dir=prepared[0])
  source = factor_dataset.FactorSource(prepared[1]["binary"])
  means = lambda images: run.posterior(images.astype(np.float32) / 255)[0]
  mig = disentanglement.mig(source, means, SEED, num_train=100, batch_size=16)
  assert m["mig"] == pytest.approx(mig["discrete_mig"], abs=1e-6)
  beta = disentanglement.beta_vae_score(source, means, SEED, batch_size=64, num_train=100,
                                        num_eval=50)
  assert (m["beta_vae_train_accuracy"], m["beta_vae_accuracy"]) == pytest.approx(
      (beta["train_accuracy"], beta["eval_accuracy"]), abs=1e-6)
  text = shapes_analysis["protocols"]["disentanglement"]
  for words in (f"RandomState({SEED})", "0.01 x the reference's",
                "beta_vae: num_train=100, num_eval=50",
                "factor_vae: num_train=100, num_eval=50, num_variance_estimate=100",
                "mig: num_train=100;"):
    assert words in text, text
  with open(os.path.join(shapes_vae, "analysis", "report.md")) as f:
    assert "| `mig` |" in f.read()


def test_test_images_takes_a_seeded_subset_of_the_test_split(shapes_vae, shapes_analysis,
                                                             prepared):
  """--test_images=300: the PCA baseline's error and the reconstruction error are those of the
  300 images numpy's PCG64 of (seed, 1) draws from the grid's 1,536 (PCA by numpy's SVD of the
  whole grid, the train split; reconstructions through aejax.restore), and the analysis says so.
  catches: the subset drawn from the seed alone (the probes' draw: PCA error 52.41, not 51.74),
  the first 300 images."""
  import aejax
  from aejax.analysis.disentanglement import factor_dataset

  assert shapes_analysis["test_images"] == TEST_IMAGES
  assert f"is {TEST_IMAGES} of its 1536 images" in shapes_analysis["protocols"]["inputs"]
  source = factor_dataset.FactorSource(prepared[1]["binary"])
  x_NxP = source.images(np.arange(1536)).reshape(1536, -1).astype(np.float64) / 255
  mean_P = x_NxP.mean(axis=0)
  basis_PxL = np.linalg.svd(x_NxP - mean_P, full_matrices=False)[2][:shapes_analysis["latents"]].T
  pick = np.sort(np.random.default_rng((SEED, 1)).permutation(1536)[:TEST_IMAGES])
  centred = x_NxP[pick] - mean_P
  pca_err = np.sum((centred - centred @ basis_PxL @ basis_PxL.T) ** 2, axis=1)
  m = shapes_analysis["metrics"]
  assert m["pca_sq_err_per_image"] == pytest.approx(np.mean(pca_err), rel=1e-6)
  x = x_NxP[pick].reshape(-1, 64, 64, 1).astype(np.float32)
  run = aejax.restore(shapes_vae, data_dir=prepared[0])
  sq_err = np.sum((run.reconstruct(x) - x) ** 2, axis=(1, 2, 3))
  assert m["sq_err_per_image"] == pytest.approx(np.mean(sq_err), rel=1e-5)


def test_the_reference_rows_score_the_factors_high_and_noise_at_chance_first_in_compare(
    shapes_vae, shapes_analysis, prepared, tmp_path):
  """aejax.disentanglement_reference on the grid, seeds 0 and 1, and compare --reference: the
  factors as the code score near each metric's maximum, noise at chance (1 / 5 factors for the
  accuracies, near 0 for MIG and DCI), and compare shows both first, mean ± std over the seeds.
  catches: the two codes swapped, the reference rows after the runs', a population std
  (ddof=0)."""
  import json

  out = str(tmp_path / "reference.json")
  proc = run_aejax(f"--data_dir={prepared[0]}", "--dataset=shapes2d_3x2x4x8x8", "--seeds=0,1",
                   "--disentanglement_scale=0.01", f"--out={out}",
                   module="aejax.disentanglement_reference", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    rows = json.load(f)["rows"]
  assert list(rows) == ["factors as code", "noise"]
  factors, noise = rows["factors as code"]["metrics"], rows["noise"]["metrics"]
  for scores in factors:
    assert set(scores) == DISENTANGLEMENT_NAMES
    assert scores["beta_vae_accuracy"] == scores["factor_vae_accuracy"] == 1.0, scores
    assert min(scores["dci_disentanglement"], scores["dci_completeness"],
               scores["dci_informativeness"], scores["modularity"]) > 0.95, scores
    assert scores["mig"] > 0.8 and scores["factor_vae_active_dims"] == 5, scores
  for scores in noise:
    assert scores["beta_vae_accuracy"] < 0.4 and scores["factor_vae_accuracy"] < 0.4, scores
    assert max(scores["mig"], scores["dci_disentanglement"], scores["sap"]) < 0.1, scores
    assert scores["factor_vae_active_dims"] == 10, scores
  # Analysis metrics only (no curve to draw): catches a zero-width curves figure.
  proc = run_aejax(shapes_vae, f"--reference={out}", "--metric=analysis.metrics.mig",
                   f"--out={tmp_path / 'compare'}", module="aejax.compare")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "compare" / "compare.csv") as f:
    assert [line.split(",")[0] for line in f][1:] == ["factors as code", "noise", "all runs"]
  table = [l for l in proc.stdout.splitlines() if l.startswith("| ")]
  assert [l.split(" | ")[0] for l in table[1:]] == ["| factors as code", "| noise", "| all runs"]
  for line, values in zip(table[1:3], ([s["mig"] for s in factors], [s["mig"] for s in noise])):
    mean, std = np.mean(values), np.std(values, ddof=1)
    shown = line.split(" | ")[2]
    assert float(shown.split(" ± ")[0]) == pytest.approx(mean, rel=1e-3), (shown, mean)
    assert float(shown.split(" ± ")[1]) == pytest.approx(std, rel=1e-2, abs=1e-4), (shown, std)
    assert line.endswith("| reference |")
  assert float(table[3].split(" | ")[2]) == pytest.approx(shapes_analysis["metrics"]["mig"],
                                                          rel=1e-3)
