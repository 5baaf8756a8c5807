r"""Analyses a trained run: `python -m aejax.analyze --workdir=/tmp/vae [--step=N] [--k=5000]`.

Restores the run's config and checkpoint (the latest, or --step) on this host's devices and
writes `<workdir>/analysis/`: metrics.json, PNG figures and report.md, which links them.
Test images get the binarisation the run trained with (config.input.binarize; 'dynamic' is one
fixed Bernoulli sample drawn from --seed).
"""

import functools
import json
import logging as py_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from aejax import cli
from aejax.data import data_flags  # --data_dir, --manual_dir, --download.
from aejax.data import dataset
from aejax.analysis import anomaly
from aejax.analysis.disentanglement import report as disentanglement_report
from aejax.analysis.disentanglement.factor_dataset import FactorSource
from aejax.analysis import figures
from aejax.analysis import kl_parts
from aejax import decoder_dists
from aejax import families
from aejax import losses
from aejax import memory
from aejax.analysis import probes
from aejax.analysis import restored as restored_lib
from aejax.analysis import sample_scores
from aejax.analysis import samplers
from aejax.run import lock
from aejax.run import rundir
from aejax.run import storage
from aejax.errors import StorageError, UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by aejax.main.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to analyse (default: the latest).")
_K = flags.DEFINE_integer("k", 5000, "Posterior samples per test image for the importance-"
                          "sampled NLL (VAE family).")
_NLL_IMAGES = flags.DEFINE_integer(
    "nll_images", 0, "Test images (the first ones) the ELBO, NLL and KL parts are estimated on; "
    "0: the whole test split.")
_PROBE_EXAMPLES = flags.DEFINE_integer(
    "probe_examples", 0, "Train images (a random subset) the linear probe and k-NN fit on; "
    "0: the whole train split.")
_TEST_IMAGES = flags.DEFINE_integer(
    "test_images", 0, "Test images the analysis uses (a random subset drawn from --seed when "
    "fewer than the test split; --nll_images then takes the first of them); 0: the whole test "
    "split. For a large test split, such as a shapes grid scored on its one split.")
_NEIGHBORS = flags.DEFINE_integer("neighbors", 5, "Neighbours of the k-NN classifier.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random draw of the analysis.")
_EVAL_MEMORY = flags.DEFINE_float(
    "eval_memory_bytes", 0, "Bytes of device memory the NLL's decoded samples and the KL parts "
    "may take at once, e.g. 4e9; 0: a quarter of the device's memory ($AEJAX_DEVICE_MEMORY_BYTES, "
    "else the device's limit, else the host's memory). The numbers do not depend on it.")
_SAMPLE_QUALITY = flags.DEFINE_bool(
    "sample_quality", False, "Also measure sample quality in the dataset's feature network "
    "(built once beside the prepared dataset): FD, KID, precision, recall, density and coverage "
    "of generated and of reconstructed test images, and the real floor (docs/analysis.md).")
_SAMPLE_IMAGES = flags.DEFINE_integer(
    "sample_images", sample_scores.IMAGES, "Generated images and test images each of the "
    "sample-quality metrics compares (at most the test split).")
_EX_POST_COMPONENTS = flags.DEFINE_integer(
    "ex_post_components", samplers.EX_POST_COMPONENTS, "Components of the Gaussian mixture "
    "fitted to the train codes of a family without a prior (ae, rae), which the sample-quality "
    "metrics sample from; 0: such a family has no sampler.")
_EX_POST_SAMPLER = flags.DEFINE_enum(
    "ex_post_sampler", "gmm", samplers.EX_POST, "How the sample-quality metrics sample a family "
    "without a prior (ae, rae): gmm, the Gaussian mixture of --ex_post_components fitted to the "
    "train codes; maf, a masked autoregressive flow fitted to them; two_stage, the second stage "
    "of the two-stage VAE fitted to them; normal, N(0, I) codes (a reference). Other families "
    "sample their own prior.")
_DISENTANGLEMENT = flags.DEFINE_bool(
    "disentanglement", False, "Also measure disentanglement_lib's metrics of the encoder means, "
    "on a dataset with ground-truth factors (aejax.prepare_shapes); --disentanglement_scale "
    "shrinks their sample sizes.")
flags.mark_flags_as_required(["workdir"])
cli.require_local_paths("workdir")

TEST_SUBSET_STREAM = 1
CORRUPT_FRACTION = 0.1  # Pixels set to 0/1 in the anomalies of the corrupted-vs-clean AUROC.
# analyze's names of the KL parts (losses.kl_parts) in metrics.json.
KL_PARTS = {"mi": "index_code_mi", "tc": "total_correlation", "dwkl": "dimensionwise_kl"}
MEMORY_FIX = ("lower --eval_memory_bytes (the NLL's and KL parts' chunks; 0 takes a quarter of "
              "the device's memory) or --nll_images")


def subset_of_test_split(split_size: int, count: int, seed: int) -> np.ndarray:
  """The indices of --test_images, in split order: `count` of the split drawn without
  replacement from PCG64 of (seed, TEST_SUBSET_STREAM), apart from the probes' draw."""
  order = np.random.default_rng((seed, TEST_SUBSET_STREAM)).permutation(split_size)
  return np.sort(order[:count])


# --- Scores on the test split ------------------------------------------------------------------

def reconstruction_scores(run: restored_lib.Restored, x: np.ndarray) -> dict[str, np.ndarray]:
  """Per-image squared error of the reconstruction of each image's code (model.code: a VAE
  decodes its posterior mean) and its -log p(x|z) under the decoder's distribution: 'bce' for
  the Bernoulli, else 'rec_nll' (rec_nll_key)."""
  model, dist = run.model, decoder_dists.of(run.config.model)

  @jax.jit
  def scores(params, x_B):
    out = model.apply({"params": params}, model.apply({"params": params}, x_B,
                                                      method=model.code),
                      method=model.decode)
    return {"sq_err": losses.squared_error(dist.mean(out), x_B),
            rec_nll_key(run.config): -dist.log_prob(out, x_B)}

  return run.map_batches(functools.partial(scores, run.params), x)


def rec_nll_key(config: ml_collections.ConfigDict) -> str:
  """The name of the reconstruction's -log p(x|z): the Bernoulli's is the cross-entropy."""
  return "bce" if config.model.decoder_dist == "bernoulli" else "rec_nll"


def family_reports(run: restored_lib.Restored) -> dict[str, float]:
  """The family's own train metrics (its REPORTS) as 'train_<key>': their means over the last
  train epoch the run logged at or before the restored step (metrics.jsonl)."""
  names = families.reports(run.config)
  lines = [r for r in rundir.read_metrics(run.workdir)
           if r["split"] == "train" and r["step"] <= run.step]
  if not names or not lines:
    return {}
  return {f"train_{k}": float(lines[-1][k]) for k in names if k in lines[-1]}


# --- The analysis ------------------------------------------------------------------------------

def analyze(workdir: str, *, step: int | None = None, k: int = 5000, data_dir: str | None = None,
            manual_dir: str | None = None, download: bool = True, nll_images: int = 0,
            probe_examples: int = 0, test_images: int = 0, neighbors: int = 5, seed: int = 0,
            eval_memory_bytes: float = 0, sample_quality: bool = False,
            sample_images: int = sample_scores.IMAGES,
            ex_post_components: int = samplers.EX_POST_COMPONENTS, ex_post_sampler: str = "gmm",
            disentanglement: bool = False, disentanglement_scale: float = 1.0) -> dict:
  """Writes <workdir>/analysis/{metrics.json, *.png, report.md}; returns the metrics.json dict."""
  if (k < 1 or neighbors < 1 or probe_examples < 0 or nll_images < 0 or test_images < 0
      or eval_memory_bytes < 0):
    raise UserError(f"--k={k} and --neighbors={neighbors} must be >= 1, --probe_examples="
                    f"{probe_examples}, --test_images={test_images}, --nll_images={nll_images} "
                    f"and --eval_memory_bytes={eval_memory_bytes:g} >= 0")
  if sample_quality:
    sample_scores.check_settings(sample_images, ex_post_components)
  elif ex_post_sampler != "gmm":
    raise UserError(f"--ex_post_sampler={ex_post_sampler} has no effect without "
                    f"--sample_quality; pass both, or leave it out")
  disentanglement_report.check_scale(disentanglement_scale, disentanglement)
  restored_lib.load_config(workdir)  # A folder that holds no run is neither locked nor created.
  # Locked before anything is read: not while a run or another analysis writes this workdir.
  with storage.writing(os.path.join(workdir, lock.FILENAME)):
    lock.acquire(workdir)
  try:
    return _analyze(workdir, step=step, k=k, data_dir=data_dir, manual_dir=manual_dir,
                    download=download, nll_images=nll_images, probe_examples=probe_examples,
                    num_test_images=test_images, neighbors=neighbors, seed=seed,
                    eval_memory_bytes=eval_memory_bytes,
                    sample_quality=sample_quality, sample_images=sample_images,
                    ex_post_components=ex_post_components, ex_post_sampler=ex_post_sampler,
                    disentanglement=disentanglement, disentanglement_scale=disentanglement_scale)
  finally:
    lock.release(workdir)


def _analyze(workdir: str, *, step: int | None, k: int, data_dir: str | None,
             manual_dir: str | None, download: bool, nll_images: int, probe_examples: int,
             num_test_images: int, neighbors: int, seed: int, eval_memory_bytes: float,
             sample_quality: bool,
             sample_images: int, ex_post_components: int, ex_post_sampler: str,
             disentanglement: bool, disentanglement_scale: float) -> dict:
  # Fails on a bad workdir/step before any data work.
  run = restored_lib.restore(workdir, step, data_dir=data_dir)
  config = run.config
  logging.info("Restored %s (%s, %d latents) at step %d on %d %s device(s)", workdir,
               config.model.name, config.model.latents, run.step, jax.device_count(),
               jax.devices()[0].platform)
  out_dir = os.path.join(workdir, "analysis")
  with storage.writing(out_dir):
    os.makedirs(out_dir, exist_ok=True)
  storage.remove_killed_temps(out_dir)

  if sample_quality:  # A sampler the family does not have: exit 2 before any work.
    samplers.kind_of(run, ex_post_sampler)
  builder_dir = dataset.prepare(config.dataset, data_dir, manual_dir, download)
  # Found or built before the other metrics, so a dataset without one fails before that work.
  net = (sample_scores.feature_network(config, data_dir, manual_dir, download)
         if sample_quality else None)
  factors = FactorSource(builder_dir) if disentanglement else None  # No factors: exit 2 now.
  train_images, train_labels = restored_lib.load_split(config, builder_dir, "train")
  test_images, test_labels = restored_lib.load_split(config, builder_dir, "test")
  test_subset = None
  if num_test_images and num_test_images < len(test_images):
    test_subset = (num_test_images, len(test_images))
    pick = subset_of_test_split(len(test_images), num_test_images, seed)
    test_images = test_images[pick]
    test_labels = None if test_labels is None else test_labels[pick]
  # A dataset without class labels (CelebA, a folder of your own): no probes, no held-out AUROC.
  labelled = test_labels is not None
  if probe_examples and probe_examples < len(train_images):
    subset = np.random.default_rng(seed).permutation(len(train_images))[:probe_examples]
  else:
    subset = np.arange(len(train_images))
  keys = restored_lib.analysis_keys(seed)
  mode = config.input.binarize
  x_train = restored_lib.model_inputs(train_images, keys["train_input"], mode)
  x_test = restored_lib.model_inputs(test_images, keys["test_input"], mode)
  num_pixels = int(np.prod(x_test.shape[1:]))

  m, nll_count = {}, None
  budget = memory.eval_budget(eval_memory_bytes, "--eval_memory_bytes")
  rec = reconstruction_scores(run, x_test)
  m["sq_err_per_image"] = float(np.mean(rec["sq_err"]))
  m["sq_err_per_pixel"] = m["sq_err_per_image"] / num_pixels
  rec_key = rec_nll_key(config)
  m[rec_key] = float(np.mean(rec[rec_key]))
  if run.has_likelihood:
    nll_count = min(nll_images or len(x_test), len(x_test))
    vae = run.likelihood_scores(x_test[:nll_count], k, keys["nll"], budget)
    m["elbo"] = float(np.mean(vae["elbo"]))
    m["nll"] = float(np.mean(vae["nll"]))
    m["nll_bits_per_dim"] = float(losses.bits_per_dim(m["nll"], num_pixels))
  if families.has_kl_parts(config):  # On the same images; its own key, apart from the three above.
    parts = kl_parts.estimate(run, x_test[:nll_count], jax.random.fold_in(jax.random.key(seed), 1),
                              budget)
    m.update({KL_PARTS[k]: v for k, v in parts.items()})
  m.update(family_reports(run))
  logging.info("Reconstruction and likelihood done: %s", m)

  # PCA at the model's code size, fitted on the same preprocessing of the whole train split.
  components = config.model.latents
  mean_D, basis = probes.pca_fit(x_train.reshape(len(x_train), -1), components)
  pca_err = probes.pca_squared_error(x_test.reshape(len(x_test), -1), mean_D, basis)
  m["pca_sq_err_per_image"] = float(np.mean(pca_err))
  m["pca_sq_err_per_pixel"] = m["pca_sq_err_per_image"] / num_pixels

  codes_train = run.encode(x_train[subset])
  codes_test = run.encode(x_test)
  if labelled:
    m["linear_probe_accuracy"] = probes.linear_probe_accuracy(
        codes_train, train_labels[subset], codes_test, test_labels)
    m["knn_accuracy"] = probes.knn_accuracy(codes_train, train_labels[subset], codes_test,
                                            test_labels, neighbors)

  corrupted = probes.salt_and_pepper(x_test, CORRUPT_FRACTION, seed)
  m["auroc_corrupted"] = probes.auroc(rec["sq_err"],
                                      reconstruction_scores(run, corrupted)["sq_err"])
  # Held-out classes: a run trained on some labels (config.input.train_labels) against the rest.
  normal_labels, held_out = config.input.get("train_labels"), None
  if (labelled and normal_labels is not None
      and not np.isin(test_labels, normal_labels).all()):
    scores = {"sq_err": rec["sq_err"], rec_key: rec[rec_key]}
    if run.has_likelihood:
      scores.update(neg_elbo=-vae["elbo"], nll=vae["nll"])
    aurocs, per_label, left_out = anomaly.held_out_aurocs(scores, test_labels, normal_labels)
    m.update(aurocs)
    held_out = {"normal_labels": list(normal_labels), "auroc_per_label": per_label,
                "protocol": anomaly.protocol(normal_labels, test_labels,
                                             {k: len(v) for k, v in scores.items()
                                              if f"auroc_{k}" not in left_out}),
                "left_out": left_out}
  logging.info("Baselines, probes and AUROC done: %s", m)
  if factors:
    m.update(disentanglement_report.run_scores(run, factors, seed, disentanglement_scale))

  made = write_figures(run, out_dir, x_test, test_labels, codes_train, codes_test, seed)
  quality = None
  if net is not None:  # Codes of the whole train split: the ex-post samplers are fitted to them.
    quality = sample_scores.measure(
        run, net, train_images, test_images, x_test,
        codes_train if len(subset) == len(x_train) else run.encode(x_train),
        images=sample_images, components=ex_post_components, seed=seed, ex_post=ex_post_sampler,
        out_dir=out_dir)
    m.update(quality.metrics)
    made.append(quality.figure)
  result = {
      "workdir": os.path.abspath(workdir), "step": run.step, "model": config.model.name,
      "latents": config.model.latents, "binarize": mode, "test_images": len(x_test),
      "metrics": m,
      "settings": {"k": k if run.has_likelihood else None,
                   "nll_images": nll_count,
                   "probe_train_examples": len(subset),
                   "knn_neighbors": neighbors, "pca_components": components, "seed": seed,
                   "devices": jax.device_count()},
      "protocols": protocols(mode, nll_count, k, components, len(subset), neighbors,
                             None if labelled else config.dataset,
                             families.has_kl_parts(config), test_subset),
      "figures": sorted(made),
  }
  if quality is not None:
    result["sample_quality"] = quality.record
    result["protocols"]["sample_quality"] = quality.protocol
  if factors:
    result["protocols"]["disentanglement"] = disentanglement_report.protocol(
        seed, disentanglement_scale)
  if held_out is not None:
    result["protocols"]["held_out"] = held_out.pop("protocol")
    result["protocols"].update(held_out.pop("left_out"))
    result["held_out"] = held_out
  # Each file whole or not at all: a crash leaves the previous analysis's metrics.json or none.
  with storage.atomic(os.path.join(workdir, rundir.ANALYSIS)) as f:
    json.dump(result, f, indent=2)
  with storage.atomic(os.path.join(out_dir, "report.md")) as f:
    f.write(report(result))
  logging.info("Wrote %s: metrics.json, report.md and %d figures", out_dir, len(made))
  return result


def protocols(mode: str, nll_count: int | None, k: int, components: int, probe_examples: int,
              neighbors: int, unlabelled: str | None = None,
              with_kl_parts: bool = False,
              test_subset: tuple[int, int] | None = None) -> dict[str, str]:
  """How each number of metrics.json was measured, in words (copied into report.md);
  `unlabelled`: the name of a dataset without class labels, whose label-based numbers are left
  out; `with_kl_parts`: the KL parts of a VAE-family run's aggregate posterior are measured;
  `test_subset`: (count, split size) of --test_images, where it took a subset."""
  text = {
      "inputs": f"test and train images preprocessed as in training (binarize={mode!r}; "
                f"'dynamic' is one fixed Bernoulli sample)",
      "reconstruction": "squared error (of the decoder distribution's mean) and -log p(x|z) "
                        "(bce: the Bernoulli's cross-entropy; rec_nll: another decoder "
                        "distribution's) summed over the pixels of each test image, averaged "
                        "over the test split; VAE-family models decode the posterior mean",
  }
  if test_subset:
    text["inputs"] += (f"; the test split is {test_subset[0]} of its {test_subset[1]} images, "
                       f"drawn at random from the seed (--test_images), in split order")
  if nll_count is not None:
    text["likelihood"] = (
        f"nats per image (and bits per dimension: / (pixels x channels x ln 2)) of the first "
        f"{nll_count} test images, from the same k = {k} samples "
        f"z_k ~ q(z|x) with w_k = p(x|z_k) p(z_k) / q(z_k|x): nll = -log (1/k) sum_k w_k, "
        f"elbo = (1/k) sum_k log w_k")
  if with_kl_parts:
    text["kl_parts"] = (
        f"the KL parts of Chen et al. (2018) of the aggregate posterior q(z) = (1/N) sum_n "
        f"q(z|x_n) of the same N = {nll_count} test images, exact over them (no minibatch "
        f"weighting): one sample z_n ~ q(z|x_n) each, log q(z_n) = logsumexp_m log q(z_n|x_m) "
        f"- log N and each marginal log q(z_nd) likewise; index_code_mi = mean log q(z_n|x_n) "
        f"- log q(z_n), total_correlation = mean log q(z_n) - sum_d log q(z_nd), "
        f"dimensionwise_kl = mean sum_d log q(z_nd) - log p(z_n) (nats)")
  text["pca"] = (f"exact PCA fitted on the train split, {components} components (the code "
                 f"size), squared error of the test projections")
  if unlabelled:
    text["probes"] = (f"left out: {unlabelled} has no class label feature, so there is nothing "
                      f"for the linear probe and k-NN to predict")
    text["held_out"] = (f"left out: {unlabelled} has no class label feature, so no class can be "
                        f"held out; auroc_corrupted needs no labels and is measured")
  else:
    text["probes"] = (f"logistic regression on standardised codes (posterior means for VAEs) "
                      f"of {probe_examples} train images, accuracy on the test split; k-NN with "
                      f"{neighbors} neighbours, Euclidean")
  text["corrupted"] = (f"auroc_corrupted, corrupted vs clean test images: each against a copy with "
                       f"{CORRUPT_FRACTION:.0%} of its pixels set to 0 or 1 (salt and pepper), "
                       f"scored by reconstruction squared error; a run trained on some labels "
                       f"only (config.input.train_labels) also gets the held-out AUROCs")
  return text


def write_figures(run, out_dir: str, x_test: np.ndarray, test_labels: np.ndarray,
                  codes_train: np.ndarray, codes_test: np.ndarray, seed: int) -> list[str]:
  path = lambda name: os.path.join(out_dir, f"{name}.png")
  made = ["reconstructions"]
  figures.reconstructions(path("reconstructions"), x_test[:32], run.reconstruct(x_test[:32]))
  if run.is_generative:
    figures.samples(path("samples"), run.sample(64, seed=seed))
    t_T = np.linspace(0.0, 1.0, 12, dtype=np.float32)[:, None]
    z_ends = codes_test[:2]
    figures.interpolation(path("interpolation"),
                          run.decode((1 - t_T) * z_ends[0][None] + t_T * z_ends[1][None]))
    made += ["samples", "interpolation"]
  elif run.ex_post_components:
    z = samplers.gmm_sample(samplers.gaussian_mixture(codes_train, run.ex_post_components, seed),
                            64, seed)
    figures.samples(path("samples"), run.decode(z))
    made.append("samples")
  if codes_test.shape[1] == 2:
    points, how = codes_test, "the 2-D code itself"
  else:
    mean_D, basis = probes.pca_fit(codes_test, 2)
    points, how = (codes_test - mean_D) @ basis, f"PCA of the {codes_test.shape[1]}-D codes"
  figures.codes_2d(path("codes_2d"), points, test_labels, how)
  made.append("codes_2d")
  if run.is_generative and codes_test.shape[1] == 2:
    n = 20
    q1_N, q2_N = restored_lib.prior_quantiles(run, np.linspace(0.05, 0.95, n), seed)
    z1, z2 = np.meshgrid(q1_N, q2_N[::-1])  # z2 grows upwards, as on a plot.
    figures.manifold(path("manifold"), run.decode(np.stack([z1.ravel(), z2.ravel()], 1)), n,
                     float(max(abs(q1_N[-1]), abs(q2_N[-1]))))
    made.append("manifold")
  if records := rundir.read_metrics(run.workdir):  # Tolerates a cut-off last line.
    figures.curves(path("curves"), records)
    made.append("curves")
  return [f"{name}.png" for name in made]


METRIC_TEXT = {
    "sq_err_per_image": "reconstruction squared error per test image",
    "sq_err_per_pixel": "reconstruction squared error per pixel",
    "bce": "reconstruction Bernoulli cross-entropy per image (nats)",
    "rec_nll": "reconstruction -log p(x|z) per image under the decoder's distribution (nats)",
    "elbo": "test ELBO per image (nats)",
    "nll": "importance-sampled negative log-likelihood per image (nats)",
    "nll_bits_per_dim": "the same NLL in bits per dimension: nll / (pixels x channels x ln 2)",
    "index_code_mi": "index-code mutual information I(x; z) of the aggregate posterior (nats)",
    "total_correlation": "total correlation KL(q(z) || prod_d q(z_d)) (nats)",
    "dimensionwise_kl": "dimension-wise KL sum_d KL(q(z_d) || p(z_d)) (nats)",
    "pca_sq_err_per_image": "PCA baseline (same code size): squared error per image",
    "pca_sq_err_per_pixel": "PCA baseline: squared error per pixel",
    "linear_probe_accuracy": "linear probe (logistic regression on codes): test accuracy",
    "knn_accuracy": "k-NN on codes: test accuracy",
    "auroc_corrupted": "AUROC of salt-and-pepper corrupted vs clean test images (squared error)",
    **{f"auroc_{name}": f"held-out classes AUROC, score: {text}"
       for name, text in anomaly.SCORE_TEXT.items()},
    **disentanglement_report.TEXT,
}


# A family's own train metrics (families.reports), e.g. the WAE's train_mmd.
REPORT_TEXT = ("the model family's own quantity (its REPORTS): mean over the last train epoch "
               "logged at or before this step, from metrics.jsonl")


def report(result: dict) -> str:
  lines = [f"# Analysis of `{result['workdir']}` at step {result['step']}", "",
           f"Model `{result['model']}` with {result['latents']} latents; inputs binarised as "
           f"`{result['binarize']}`; {result['test_images']} test images.", "",
           "| metric | value | what |", "|---|---|---|"]
  for name, value in result["metrics"].items():
    text = (METRIC_TEXT.get(name) or (REPORT_TEXT if name.startswith("train_") else "")
            or sample_scores.describe(name, result.get("sample_quality", {}).get("network")))
    lines.append(f"| `{name}` | {value:.4f} | {text} |")
  if "held_out" in result:
    lines += ["", *anomaly.report_lines(result["held_out"]["normal_labels"],
                                        result["held_out"]["auroc_per_label"])]
  lines += ["", "## How each number was measured", ""]
  lines += [f"- **{name}**: {text}" for name, text in result["protocols"].items()]
  lines += ["", "## Figures", ""]
  for name in result["figures"]:
    lines += [f"### {name[:-4]}", "", f"![{name[:-4]}]({name})", ""]
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; see --help")
  # Orbax logs every restore phase at INFO; keep the console for aejax's own lines.
  logging.get_absl_logger().addFilter(
      lambda r: r.levelno >= py_logging.WARNING or "/orbax/" not in r.pathname)
  try:
    analyze(_WORKDIR.value, step=_STEP.value, k=_K.value, **data_flags.values(),
            nll_images=_NLL_IMAGES.value,
            probe_examples=_PROBE_EXAMPLES.value, test_images=_TEST_IMAGES.value,
            neighbors=_NEIGHBORS.value, seed=_SEED.value,
            eval_memory_bytes=_EVAL_MEMORY.value, sample_quality=_SAMPLE_QUALITY.value,
            sample_images=_SAMPLE_IMAGES.value, ex_post_components=_EX_POST_COMPONENTS.value,
            ex_post_sampler=_EX_POST_SAMPLER.value, disentanglement=_DISENTANGLEMENT.value,
            disentanglement_scale=disentanglement_report.SCALE.value)
  except (UserError, StorageError) as e:
    cli.fail(str(e), e.exit_code)
  except jax.errors.JaxRuntimeError as e:
    if not (line := cli.out_of_memory(e, MEMORY_FIX)):
      raise
    cli.fail(line)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
