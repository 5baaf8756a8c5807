"""aejax.sweep and aejax.compare as a user runs them: one real 2 x 2 sweep on MNIST, reused."""

import csv
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from aejax.run import rundir
from aejax import sweep as sweep_lib
from conftest import run_aejax

SEEDS, LATENTS = (0, 1), (2, 4)
RUN_NAMES = [f"mlp_ae-seed={s}-model.latents={z}" for s in SEEDS for z in LATENTS]


def _sweep_args(root: str, data_dir: str) -> list[str]:
  return ["--config=experiments/mlp_ae.py", f"--workdir={root}", f"--data_dir={data_dir}",
          "--config.num_epochs=1", "--config.model.hidden=(32,)",
          f"--sweep=seed={','.join(map(str, SEEDS))}",
          f"--sweep=model.latents={','.join(map(str, LATENTS))}"]


@pytest.fixture(scope="module")
def swept(data_dir, tmp_path_factory):
  """The root of a finished 2 seeds x 2 code sizes sweep of a shrunken mlp_ae (4 short runs)."""
  root = str(tmp_path_factory.mktemp("sweep") / "root")
  proc = run_aejax(*_sweep_args(root, data_dir), module="aejax.sweep", timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root


def _final(run_dir: str, metric: str) -> float:
  (test,) = [r for r in rundir.read_metrics(run_dir) if r["split"] == "test"]
  return test[metric]


def _table(stdout: str) -> list[dict[str, str]]:
  lines = [l for l in stdout.splitlines() if l.startswith("|")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  assert set(lines[1]) == {"|", "-"}
  return [dict(zip(header, (c.strip() for c in l.strip("|").split("|")))) for l in lines[2:]]


def _mean_std(cell: str) -> tuple[float, float | None, int]:
  """'44.95 ± 1.56' -> (44.95, 1.56, 2 decimals)."""
  mean, _, std = cell.partition(" ± ")
  return float(mean), float(std) if std else None, len(mean.partition(".")[2])


def _num_params(latents: int) -> int:
  """Counted apart from compare (which reads checkpoint metadata): the model, abstractly."""
  from aejax import configs
  from aejax import families

  cfg = configs.base().model
  cfg.hidden, cfg.latents = (32,), latents
  model = families.create_model(cfg, (28, 28, 1))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)),
                          jax.random.key(1))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_sweep_runs_the_cross_product_and_compare_tabulates_it(swept, tmp_path):
  assert sorted(os.listdir(swept)) == sorted(RUN_NAMES)
  for seed in SEEDS:
    for latents in LATENTS:
      run = os.path.join(swept, f"mlp_ae-seed={seed}-model.latents={latents}")
      config = rundir.read_config(run)
      assert (config["seed"], config["model"]["latents"]) == (seed, latents)
      assert config["model"]["hidden"] == [32] and config["num_epochs"] == 1
      assert rundir.is_finished(run, 1)

  out = str(tmp_path / "out")
  proc = run_aejax(swept, f"--out={out}", module="aejax.compare", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = _table(proc.stdout)
  assert [r["model.latents"] for r in rows] == ["2", "4"]  # One row per code size, seeds folded.
  with open(os.path.join(out, "compare.csv")) as f:
    csv_rows = list(csv.DictReader(f))
  assert len(csv_rows) == 2

  for latents, row, csv_row in zip(LATENTS, rows, csv_rows):
    assert row["n"] == "2" and row["status"] == "complete"
    # The default metric of an 'ae' experiment is the test squared error.
    finals = [_final(os.path.join(swept, f"mlp_ae-seed={s}-model.latents={latents}"), "sq_err")
              for s in SEEDS]
    mean, std, decimals = _mean_std(row["test sq_err ↓"])
    assert mean == pytest.approx(np.mean(finals), abs=0.51 * 10**-decimals)
    assert std == pytest.approx(np.std(finals, ddof=1), abs=0.51 * 10**-decimals)
    assert row["params"] == f"{_num_params(latents):,}"

    # The CSV is the same table at full precision.
    assert csv_row["model.latents"] == row["model.latents"] and csv_row["n"] == row["n"]
    assert float(csv_row["sq_err_mean"]) == pytest.approx(np.mean(finals), rel=1e-6)
    assert float(csv_row["sq_err_std"]) == pytest.approx(np.std(finals, ddof=1), rel=1e-6)
    assert f"{float(csv_row['sq_err_mean']):.{decimals}f}" == f"{mean:.{decimals}f}"
    assert f"{int(csv_row['params']):,}" == row["params"]
    assert csv_row["best_epoch"] == row["best epoch (sq_err)"] == "1"
    assert f"{float(csv_row['examples_per_sec']):,.0f}" == row["examples/s"]
    assert float(csv_row["wall_seconds"]) > 0 and csv_row["status"] == row["status"]

  png = Image.open(os.path.join(out, "curves.png"))
  assert png.format == "PNG" and png.size == (600, 400)
  colors = {tuple(c) for c in np.asarray(png.convert("RGB")).reshape(-1, 3)}
  for variant_color in ((0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e)):  # Matplotlib's C0 and C1.
    assert variant_color in colors


def test_rerunning_the_sweep_trains_nothing(swept, data_dir):
  def snapshot():
    files = {}
    for name in RUN_NAMES:
      for f in ("metrics.jsonl", "main.log", "config.json"):
        path = os.path.join(swept, name, f)
        files[path] = (open(path, "rb").read(), os.stat(path).st_mtime_ns)
      files[name] = sorted(os.listdir(os.path.join(swept, name, "checkpoints")))
    return files

  before = snapshot()
  proc = run_aejax(*_sweep_args(swept, data_dir), module="aejax.sweep", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "4 finished (skipped), 0 to run" in proc.stderr
  assert "Starting" not in proc.stderr
  assert snapshot() == before


def test_compare_marks_a_crashed_run_and_the_sweep_reruns_it(swept, data_dir, tmp_path):
  root = str(tmp_path / "root")
  shutil.copytree(swept, root)
  # Killed during its final evaluation: the train line and the epoch's checkpoint are written
  # (the checkpoint before the evaluation started), no test line.
  crashed = os.path.join(root, "mlp_ae-seed=1-model.latents=4")
  with open(os.path.join(crashed, "metrics.jsonl")) as f:
    train_line = f.readline()
  assert json.loads(train_line)["split"] == "train"
  with open(os.path.join(crashed, "metrics.jsonl"), "w") as f:
    f.write(train_line)
  assert rundir.checkpoint_steps(crashed) == [468]
  assert not rundir.is_finished(crashed, 1)  # The sweep would run it again.

  # analysis/metrics.json (aejax.analyze's output) is read too: here it repeats the test error.
  for name in RUN_NAMES:
    os.makedirs(os.path.join(root, name, "analysis"))
    with open(os.path.join(root, name, "analysis", "metrics.json"), "w") as f:
      json.dump({"test": {"sq_err": _final(os.path.join(swept, name), "sq_err")}}, f)

  proc = run_aejax(root, "--metric=sq_err,analysis.test.sq_err", module="aejax.compare",
                   timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = _table(proc.stdout)
  assert [(r["model.latents"], r["n"]) for r in rows] == [("2", "2"), ("4", "1")]
  assert rows[0]["status"] == "complete"
  assert re.fullmatch(r"seed 1 incomplete \(epoch 1/1, no final test line\)", rows[1]["status"])
  assert "Left out of the means" in proc.stderr and crashed in proc.stderr

  # The crashed run's variant is seed 0 alone, not an average with the crashed run.
  seed0 = _final(os.path.join(root, "mlp_ae-seed=0-model.latents=4"), "sq_err")
  mean, std, decimals = _mean_std(rows[1]["test sq_err ↓"])
  assert std is None and mean == pytest.approx(seed0, abs=0.51 * 10**-decimals)
  # The analysis column averages the same complete runs as the test column.
  for row in rows:
    assert row["analysis.test.sq_err ↓"] == row["test sq_err ↓"]

  # The same sweep command (two at a time) runs the crashed run again and only that one.
  others = {n: open(os.path.join(root, n, "metrics.jsonl")).read() for n in RUN_NAMES
            if os.path.join(root, n) != crashed}
  proc = run_aejax(*_sweep_args(root, data_dir), "--parallel=2", module="aejax.sweep",
                   timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "3 finished (skipped), 1 to run, 2 at a time" in proc.stderr
  assert rundir.is_finished(crashed, 1) and f"Finished {crashed}" in proc.stderr
  # It only evaluated: its epoch was not trained again (the train line is the one first written).
  assert open(os.path.join(crashed, "metrics.jsonl")).readline() == train_line
  assert "has no test line" in open(os.path.join(crashed, "main.log")).read()
  assert others == {n: open(os.path.join(root, n, "metrics.jsonl")).read() for n in others}


def test_force_new_starts_the_sweep_afresh_in_a_new_workdir_that_its_runs_resume(swept,
                                                                                 data_dir):
  """The sweep decides the fresh directory once, for all its runs: `<workdir>-2`, its runs under
  their usual names, each run's main given that directory without --force_new (which a Slurm
  requeue repeats: it resumes). The old sweep is left as it was. Catches: --force_new passed on
  to every run, whose main then finds the sweep's main.log in its directory and moves to
  `<run>-2`, which the sweep reports FAILED."""
  name = RUN_NAMES[0]
  before = sorted(os.listdir(swept))
  args = [*_sweep_args(swept, data_dir), f"--only={name}", "--force_new"]
  proc = run_aejax(*args, module="aejax.sweep", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  fresh = f"{swept}-2"
  assert f"this sweep's workdir is {fresh}" in proc.stderr
  assert sorted(os.listdir(swept)) == before and os.listdir(fresh) == [name]
  assert rundir.is_finished(os.path.join(fresh, name), 1)
  assert "--force_new" not in open(os.path.join(fresh, name, "main.log")).read()
  again = run_aejax(*_sweep_args(fresh, data_dir), f"--only={name}", module="aejax.sweep",
                    timeout=300)
  assert again.returncode == 0 and "1 finished (skipped), 0 to run" in again.stderr


def test_the_runs_of_a_sweep_never_get_force_new(monkeypatch):
  """What each run's command (local or a Slurm task) gets of the sweep's flags: not --force_new,
  which the sweep has already applied to its --workdir (catches: main_flags forwarding it)."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  monkeypatch.setattr(flags.FLAGS["force_new"], "present", 1)
  monkeypatch.setattr(flags.FLAGS["allow_fallback"], "present", 1)
  assert "--noallow_fallback" in sweep_lib.main_flags()
  assert not [f for f in sweep_lib.main_flags() if "force_new" in f]


@pytest.mark.parametrize("flags,expected", [
    (["--sweep=model.latnets=2,4"], "'model.latnets', which is no field"),
    (["--sweep=model.latents=2,4", "--config.model.latents=8"], "both swept and set"),
])
def test_bad_sweep_is_one_line_exit_2_before_any_run(flags, expected, data_dir, tmp_path):
  root = tmp_path / "root"
  proc = run_aejax("--config=experiments/mlp_ae.py", f"--workdir={root}",
                   f"--data_dir={data_dir}", *flags, module="aejax.sweep", timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  (line,) = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert expected in line and "Traceback" not in proc.stderr
  assert not root.exists()


def test_parallel_gpu_runs_get_disjoint_equal_shares():
  assert sweep_lib.split_gpus(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
  assert sweep_lib.split_gpus(["4", "5", "6", "7", "8"], 2) == [["4", "5"], ["6", "7"]]
  with pytest.raises(sweep_lib.UserError, match="exceeds the 2 GPUs"):
    sweep_lib.split_gpus(["0", "1"], 3)


def test_sweep_values_and_directory_names():
  assert sweep_lib.split_values("0, 1,2") == ["0", "1", "2"]
  assert sweep_lib.split_values("(64,),(256, 64)") == ["(64,)", "(256, 64)"]
  assert sweep_lib.safe_name("(256, 64)") == "256,64"
  assert sweep_lib.safe_name("a/b c") == "a_bc"
  assert sweep_lib.safe_name("1e-3") == "1e-3"


def test_compare_by_folder_gives_the_real_floor_as_its_first_row(swept, tmp_path):
  """Runs of different experiments, one folder each, named by their folder (--by=folder), with
  the real floor aejax.analyze stores beside sample-quality metrics as the first row.
  Catches: the floor row left out; the floor shown under the reconstructions' column; a variant
  named by --by that mixes runs of other configs (here two code sizes) averaged silently."""
  root = str(tmp_path / "root")
  fd, floor = {2: 40.0, 4: 30.0}, 1.5
  for latents, folder in ((2, "small"), (4, "large")):
    for seed in SEEDS:
      name = f"mlp_ae-seed={seed}-model.latents={latents}"
      run = os.path.join(root, folder, name)
      shutil.copytree(os.path.join(swept, name), run)
      os.makedirs(os.path.join(run, "analysis"))
      with open(os.path.join(run, "analysis", "metrics.json"), "w") as f:
        json.dump({"metrics": {"fd_net": fd[latents] + seed, "rec_fd_net": 1.0},
                   "sample_quality": {"images": 100, "floor": {"fd_net": floor}}}, f)
  metrics = "--metric=analysis.metrics.fd_net,analysis.metrics.rec_fd_net"
  proc = run_aejax(root, "--by=folder", metrics, module="aejax.compare", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = _table(proc.stdout)
  assert [r["folder"] for r in rows] == ["real floor: 100 train vs 100 test images", "large",
                                        "small"]
  assert rows[0]["analysis.metrics.fd_net ↓"] == "1.500"
  assert rows[0]["analysis.metrics.rec_fd_net ↓"] == "-"
  assert [_mean_std(r["analysis.metrics.fd_net ↓"])[:2] for r in rows[1:]] == [
      (30.5, 0.71), (40.5, 0.71)]  # sqrt(1/2) at the mean's decimals.
  # One folder holding both code sizes: not one variant.
  mixed = os.path.join(root, "small", "mlp_ae-seed=0-model.latents=4")
  shutil.copytree(os.path.join(root, "large", "mlp_ae-seed=0-model.latents=4"), mixed)
  proc = run_aejax(root, "--by=folder", metrics, module="aejax.compare", timeout=300)
  assert proc.returncode == 2 and "differ in model.latents; add those fields to --by" in \
      proc.stderr, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr


def test_compare_ranks_each_disentanglement_score_and_keeps_every_other_direction():
  """Every score analyze --disentanglement writes is better higher (FactorVAE's count of active
  dimensions has no better side), and no existing metric changes direction.
  catches: a score left without a direction (`mig` dropped from HIGHER_IS_BETTER), and a word
  that turns another metric (`mi` for MIG turns `index_code_mi` and `train_mi`)."""
  from aejax import compare
  from aejax.analysis.disentanglement import report

  higher = {"beta_vae_accuracy", "beta_vae_train_accuracy", "factor_vae_accuracy",
            "factor_vae_train_accuracy", "mig", "dci_disentanglement", "dci_completeness",
            "dci_informativeness", "dci_informativeness_train", "sap", "modularity",
            "explicitness", "explicitness_train"}
  assert set(report.NAMES.values()) == higher | {"factor_vae_active_dims"}
  for name in report.NAMES.values():
    assert compare.direction(f"analysis.metrics.{name}") == (name in higher), name
  # Test metrics, analyze's and the families' own: their directions before these scores came.
  kept = {"elbo": 1, "knn_accuracy": 1, "linear_probe_accuracy": 1, "auroc_corrupted": 1,
          "auroc_neg_elbo": 1, "sq_err": -1, "sq_err_per_pixel": -1, "bce": -1, "rec_nll": -1,
          "loss": -1, "rec": -1, "nll": -1, "nll_bits_per_dim": -1, "pca_sq_err_per_image": -1,
          "kl": 0, "index_code_mi": 0, "total_correlation": 0, "dimensionwise_kl": 0,
          "train_mi": 0, "train_tc": 0, "train_dwkl": 0, "train_dip": 0, "train_capacity": 0,
          "train_mmd": 0, "train_code_perplexity": 0, "grad_norm": 0}
  assert {m: compare.direction(m) for m in kept} == kept
