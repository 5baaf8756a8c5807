r"""Compares runs: one table over the variants (markdown on stdout, CSV), their test curves (PNG).

  python -m aejax.compare /tmp/sweep [more run dirs or folders of runs] --out=/tmp/sweep/compare

A variant is a set of runs whose configs agree on every field except `seed`; the table's first
columns are the fields that differ between variants. For each variant it gives, over its complete
runs (those whose metrics hold the test line of their final epoch):
- each metric's final value as mean ± std (sample std, ddof=1; only the mean when n = 1);
- the best epoch of the mean curve of the first test metric that has a better direction;
- the parameter count (from the checkpoint's metadata), mean examples/s of the train lines, and
  the wall time from the start of epoch 1 to the last metrics line (start-up and compilation
  excluded; a resumed run's time includes its interruption).
A run that is still running or crashed is listed in the status column and left out of every mean.

The default metric is the model family's main test metric (its module's MAIN_METRIC, read by
`main_metric`), written out in the table's header.
`--metric=analysis.<path>` reads the number at that dotted path of `<run>/analysis/metrics.json`
(written by aejax.analyze): `analysis.metrics.nll`, `analysis.metrics.knn_accuracy`, ...
Below the table, each metric's mean over the variants (the mean of the rows).

Runs of different experiments differ in many fields: `--by=folder` names each variant by its
folder instead (e.g. one aejax.sweep workdir per experiment below the path given). Metrics of
sample quality (analysis.metrics.fd_<network>, ...) get a first row, the real floor that
aejax.analyze measured beside them: the train images against the same test images.
"""

import csv
import dataclasses
import json
import math
import os
import sys
from typing import Any

from absl import app
from absl import flags
from absl import logging
import numpy as np

from aejax.run import metrics as metrics_lib
from aejax import cli
from aejax.run import rundir
from aejax.errors import UserError

_METRIC = flags.DEFINE_list(
    "metric", None, "Metrics to tabulate: test metrics of metrics.jsonl (sq_err, bce, elbo, ...) "
    "or analysis.metrics.<key> of analysis/metrics.json; default: the main metric of the runs' "
    "family (docs/sweeps.md lists each family's).")
_OUT = flags.DEFINE_string("out", None, "Folder to write compare.csv and curves.png to.")
_BY = flags.DEFINE_list(
    "by", None, "The fields that name a variant (config fields, or `folder`: the run's first "
    "folder below the path given); default: every field that differs between runs. Runs of one "
    "variant must still differ in nothing but the seed.")
_REFERENCE = flags.DEFINE_string(
    "reference", None, "JSON of reference rows written by aejax.disentanglement_reference "
    "(the factors and noise as the code), shown first, mean ± std over its seeds.")

# Which way is better, by words in the metric's name; others (kl, grad_norm) have no best.
HIGHER_IS_BETTER = ("elbo", "acc", "auroc", "precision", "recall", "coverage",
                    # disentanglement_lib's scores (analysis/disentanglement/report.py NAMES).
                    "mig", "dci_", "sap", "modularity", "explicitness")
LOWER_IS_BETTER = ("sq_err", "bce", "loss", "rec", "nll", "err", "fd", "kid")
ANALYSIS_PREFIX = "analysis."
FOLDER = "folder"  # A pseudo-field: the run's first folder below the path it was found under.
FLOOR = "sample_quality.floor."  # analysis/metrics.json's real floor of the generated metrics.


@dataclasses.dataclass
class Run:
  path: str
  config: dict[str, Any]  # Flat: {'model.latents': 2, ...}.
  records: list[dict[str, Any]]
  progress: rundir.Progress
  analysis: dict[str, float]  # analysis/metrics.json, flat; {} when absent or damaged.

  @classmethod
  def read(cls, path: str, folder: str = "") -> "Run":
    config = {**rundir.with_added_fields(rundir.flatten(rundir.read_config(path))),
              FOLDER: folder}
    records = rundir.read_metrics(path)
    try:
      analysis = rundir.read_analysis(path)
    except UserError as e:  # One damaged file costs its own numbers, not the table.
      logging.warning("Leaving out the analysis of %s: %s", path, e)
      analysis = {}
    return cls(path, config, records, rundir.progress(config["num_epochs"], records), analysis)

  def final(self, metric: str) -> float | None:
    if metric.startswith(ANALYSIS_PREFIX):
      return self.analysis.get(metric[len(ANALYSIS_PREFIX):])
    return self.progress.final_test.get(metric)

  def curve(self, metric: str) -> dict[int, float]:
    return {r["epoch"]: r[metric] for r in self.records if r["split"] == "test" and metric in r}

  def examples_per_sec(self) -> float | None:
    values = [r["examples_per_sec"] for r in self.records if r["split"] == "train"]
    return float(np.mean(values)) if values else None

  def wall_seconds(self) -> float | None:
    train = [r for r in self.records if r["split"] == "train"]
    if not train or any("time" not in r for r in self.records):
      return None  # Written before metrics lines carried a time.
    first = train[0]
    start = first["time"] - first["step"] * self.config["batch_size"] / first["examples_per_sec"]
    return max(r["time"] for r in self.records) - start


def direction(metric: str) -> int:
  """+1 when higher is better, -1 when lower is, 0 when neither (a diagnostic such as kl)."""
  name = metric.rsplit(".", 1)[-1]
  if any(word in name for word in HIGHER_IS_BETTER):
    return 1
  return -1 if any(word in name for word in LOWER_IS_BETTER) else 0


def find_runs(paths: list[str]) -> list[Run]:
  """Run directories given directly or found anywhere below the given folders."""
  found = {}
  for path in paths:
    if not os.path.isdir(path):
      raise UserError(f"{path} is not a directory; pass run directories or folders holding them")
    if rundir.is_run(path):
      found.setdefault(os.path.normpath(path), "")
      continue
    for parent, dirs, _ in os.walk(path):
      dirs.sort()
      runs = [d for d in dirs if rundir.is_run(os.path.join(parent, d))]
      for d in runs:
        below = os.path.relpath(os.path.join(parent, d), path).split(os.sep)
        found.setdefault(os.path.normpath(os.path.join(parent, d)),
                         below[0] if len(below) > 1 else "")
      dirs[:] = [d for d in dirs if d not in runs]  # A run's own folders hold no runs.
  if not found:
    raise UserError(f"no run directories (with a config.json) in {' '.join(paths)}; pass the "
                    f"--workdir of aejax.main or aejax.sweep")
  return [Run.read(p, folder) for p, folder in found.items()]


def main_metric(family_name: str) -> str:
  """The test metric a family is judged by: its module's MAIN_METRIC (aejax.families)."""
  from aejax import families  # Imports JAX: only a comparison without --metric pays for it.

  if family_name not in families.FAMILIES:
    raise UserError(f"model {family_name!r} is no family of aejax.families "
                    f"({sorted(families.FAMILIES)}); choose the metric with --metric")
  return families.FAMILIES[family_name].MAIN_METRIC


def default_metrics(runs: list[Run]) -> list[str]:
  families = sorted({r.config.get("model.name") for r in runs}, key=str)
  metrics = sorted({main_metric(f) for f in families})
  if len(metrics) > 1:
    raise UserError(f"the runs mix model families {families} whose main metrics differ "
                    f"({metrics}); choose one with --metric, e.g. --metric=loss")
  return metrics


def check_metrics(metrics: list[str], runs: list[Run]) -> None:
  complete = [r for r in runs if r.progress.complete]
  test_keys = {k for r in complete for k in r.progress.final_test} - {"step", "epoch", "split",
                                                                       "time"}
  analysis = {ANALYSIS_PREFIX + k for r in complete for k in r.analysis}
  for m in metrics:
    if complete and m not in test_keys | analysis:
      raise UserError(f"--metric={m} is in no complete run; choose from "
                      f"{sorted(test_keys | analysis)}")


# --- The table ---------------------------------------------------------------------------------

def variant_fields(runs: list[Run], by: list[str] | None = None) -> list[str]:
  """The fields that name a variant: `by`, else every field (but the seed) that differs."""
  keys = sorted({k for r in runs for k in r.config} - {"seed", FOLDER})
  differing = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
  if not by:
    return differing
  if unknown := [k for k in by if k not in keys and k != FOLDER]:
    raise UserError(f"--by={','.join(by)}: {', '.join(unknown)} is no config field of the runs; "
                    f"choose from {FOLDER} or the fields that differ: {', '.join(differing)}")
  return list(by)


def check_variants(groups: dict[tuple, list[Run]]) -> None:
  """A variant named by --by holds runs that differ in nothing but the seed."""
  for values, group in groups.items():
    keys = sorted({k for r in group for k in r.config} - {"seed", FOLDER})
    if differ := [k for k in keys if len({repr(r.config.get(k)) for r in group}) > 1]:
      raise UserError(f"the runs of variant {values} differ in {', '.join(differ[:5])}"
                      f"{', ...' if len(differ) > 5 else ''}; add those fields to --by")


def _sort_key(values: tuple) -> tuple:
  return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
               else (1, 0, repr(v)) for v in values)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
  if not values:
    return None, None
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def best_epoch_metric(metrics: list[str]) -> str | None:
  """The first per-epoch (test) metric that has a better direction."""
  return next((m for m in metrics if not m.startswith(ANALYSIS_PREFIX) and direction(m)), None)


def best_epoch(runs: list[Run], metric: str) -> int | None:
  """The epoch where the mean over runs (at the epochs they all evaluated) is best."""
  curves = [r.curve(metric) for r in runs]
  epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
  if not epochs:
    return None
  means = [np.mean([c[e] for c in curves]) for e in epochs]
  return epochs[int(np.argmax(means) if direction(metric) > 0 else np.argmin(means))]


def build_rows(runs: list[Run], metrics: list[str],
               by: list[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
  """One dict per variant, raw numbers (the markdown and the CSV are both written from these)."""
  fields = variant_fields(runs, by)
  groups: dict[tuple, list[Run]] = {}
  for r in runs:
    groups.setdefault(tuple(r.config.get(k) for k in fields), []).append(r)
  if by:
    check_variants(groups)
  curve_metric = best_epoch_metric(metrics)
  rows = []
  for values in sorted(groups, key=_sort_key):
    group = groups[values]
    done = [r for r in group if r.progress.complete]
    row = {"fields": dict(zip(fields, values)), "n": len(done),
           "seeds": [r.config.get("seed") for r in done]}
    for m in metrics:
      finals = [v for r in done if (v := r.final(m)) is not None]
      row[m] = (*mean_std(finals), len(finals))
    row["best_epoch"] = best_epoch(done, curve_metric) if curve_metric else None
    params = sorted({p for r in done if (p := rundir.count_params(r.path)) is not None})
    row["params"] = params
    row["examples_per_sec"] = mean_std([v for r in done if (v := r.examples_per_sec())])[0]
    row["wall_seconds"] = mean_std([v for r in done if (v := r.wall_seconds()) is not None])[0]
    row["incomplete"] = [r for r in group if not r.progress.complete]
    row["runs"] = group
    rows.append(row)
  return fields, rows


def fixed_row(name: str, fields: list[str], metrics: list[str],
              values: list[dict[str, float]], seeds: list) -> dict[str, Any]:
  """A row in build_rows' form that no run of the table made (a reference code, the real floor),
  named in the first field's column: each metric's mean ± std over `values` (one dict of
  analysis.metrics keys per seed); a metric it lacks is '-'."""
  row = {"fields": {f: name if i == 0 else "" for i, f in enumerate(fields or ["variant"])},
         "n": len(values), "seeds": seeds, "best_epoch": None, "params": [],
         "examples_per_sec": None, "wall_seconds": None, "incomplete": [], "runs": []}
  for m in metrics:
    key = m[len(ANALYSIS_PREFIX + "metrics."):] if m.startswith(ANALYSIS_PREFIX) else None
    found = [v[key] for v in values if key in v]
    row[m] = (*mean_std(found), len(found))
  return row


def floor_rows(runs: list[Run], fields: list[str], metrics: list[str]) -> list[dict[str, Any]]:
  """The real floor of the sample-quality metrics among `metrics`, one row per distinct floor
  (a different N or split gives another): what the train images score against the test images."""
  floors: dict[tuple, dict[str, float]] = {}
  for r in runs:
    values = {m[len(ANALYSIS_PREFIX + "metrics."):]: r.analysis.get(
        FLOOR + m[len(ANALYSIS_PREFIX + "metrics."):]) for m in metrics
              if m.startswith(ANALYSIS_PREFIX + "metrics.")}
    values = {k: v for k, v in values.items() if v is not None}
    if values:
      images = r.analysis.get("sample_quality.images")
      floors.setdefault((images, tuple(sorted(values.items()))), values)
  return [fixed_row(f"real floor: {images} train vs {images} test images", fields, metrics,
                    [values], [])
          for (images, _), values in sorted(floors.items(), key=lambda kv: repr(kv[0]))]


def _decimals(x: float) -> int:
  """Four significant digits for the mean; its std gets the same decimals."""
  if not math.isfinite(x):
    return 0  # 'nan' / 'inf' print as such.
  return max(0, 3 - math.floor(math.log10(abs(x)))) if x else 4


def _fmt_field(v: Any) -> str:
  return repr(v) if isinstance(v, tuple) else str(v)


def reference_rows(path: str, fields: list[str],
                   metrics: list[str]) -> list[dict[str, Any]]:
  """Rows of aejax.disentanglement_reference's JSON in build_rows' form, named in the first
  field's column; a metric it lacks is '-'."""
  try:
    with open(path) as f:
      rows = json.load(f)["rows"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f"--reference={path} is no file of aejax.disentanglement_reference ({e}); "
                    f"write it with python -m aejax.disentanglement_reference --out={path}")
  return [fixed_row(name, fields, metrics, ref["metrics"], ref["seeds"])
          for name, ref in rows.items()]


def status(row: dict[str, Any]) -> str:
  if not row["runs"]:
    return "reference"
  if not row["incomplete"]:
    return "complete"
  return "; ".join(f"seed {r.config.get('seed')} {r.progress.describe()}"
                   for r in row["incomplete"])


def markdown(fields: list[str], rows: list[dict[str, Any]], metrics: list[str]) -> str:
  curve_metric = best_epoch_metric(metrics) or "-"
  header = [*(fields or ["variant"]), "n", *(_metric_header(m) for m in metrics),
            f"best epoch ({curve_metric})", "params", "examples/s", "wall time", "status"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [_fmt_field(v) for v in row["fields"].values()] or ["all runs"]
    cells.append(str(row["n"]))
    for m in metrics:
      mean, std, count = row[m]
      if mean is None:
        cells.append("-")
        continue
      d = _decimals(mean)
      cell = f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if std is not None else "")
      cells.append(cell + (f" (n={count})" if count != row["n"] else ""))
    cells.append(str(row["best_epoch"]) if row["best_epoch"] is not None else "-")
    cells.append("/".join(f"{p:,}" for p in row["params"]) or "-")
    eps = row["examples_per_sec"]
    cells.append(f"{eps:,.0f}" if eps is not None else "-")
    wall = row["wall_seconds"]
    cells.append(metrics_lib.format_duration(wall) if wall is not None else "-")
    cells.append(status(row))
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines)


def variants_mean(rows: list[dict[str, Any]], metrics: list[str]) -> str:
  """A line after the table: each metric's mean over the variants' means (e.g. a one-class
  protocol's ten digits); a metric some variants lack says over how many it is."""
  parts = []
  for m in metrics:
    means = [row[m][0] for row in rows if row[m][0] is not None]
    if means:
      mean = float(np.mean(means))
      of = f" (over {len(means)} of {len(rows)})" if len(means) < len(rows) else ""
      parts.append(f"{m} {mean:.{_decimals(mean)}f}{of}")
  return f"Mean over the {len(rows)} variants: " + (", ".join(parts) or "-")


def _metric_header(metric: str) -> str:
  arrow = {1: " ↑", -1: " ↓", 0: ""}[direction(metric)]
  return f"{metric if metric.startswith(ANALYSIS_PREFIX) else 'test ' + metric}{arrow}"


def write_csv(path: str, fields: list[str], rows: list[dict[str, Any]],
              metrics: list[str]) -> None:
  """The table's rows and columns, numbers at full precision (mean and std in two columns)."""
  header = [*fields, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
            "best_epoch", "params", "examples_per_sec", "wall_seconds", "status"]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      writer.writerow([*(_fmt_field(v) for v in row["fields"].values()), row["n"],
                       *(row[m][i] for m in metrics for i in (0, 1)), row["best_epoch"],
                       "/".join(map(str, row["params"])), row["examples_per_sec"],
                       row["wall_seconds"], status(row)])


def plot_curves(path: str, fields: list[str], rows: list[dict[str, Any]],
                metrics: list[str]) -> None:
  """Per test metric: each variant's mean over its complete runs, with the min-max band."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  from matplotlib.ticker import MaxNLocator

  curve_metrics = [m for m in metrics if not m.startswith(ANALYSIS_PREFIX)]
  fig, axes = plt.subplots(1, max(1, len(curve_metrics)), figsize=(6 * max(1, len(curve_metrics)), 4),
                           squeeze=False)
  for ax, metric in zip(axes[0], curve_metrics):
    plotted = set()
    for row in rows:
      curves = [r.curve(metric) for r in row["runs"] if r.progress.complete]
      if not curves:
        continue
      epochs = sorted(set.intersection(*(set(c) for c in curves)))
      values_RxE = np.array([[c[e] for e in epochs] for c in curves])
      plotted.update(epochs)
      label = ", ".join(f"{k}={_fmt_field(v)}" for k, v in row["fields"].items()) or "all runs"
      line, = ax.plot(epochs, values_RxE.mean(0), marker="o", label=f"{label} (n={len(curves)})")
      lo_E, hi_E = values_RxE.min(0), values_RxE.max(0)
      if len(epochs) > 1:
        ax.fill_between(epochs, lo_E, hi_E, color=line.get_color(), alpha=0.25)
      else:  # A band of one epoch has no width: draw it as a bar.
        ax.vlines(epochs, lo_E, hi_E, color=line.get_color(), alpha=0.5, linewidth=6)
    ax.set_xlabel("epoch")
    if len(plotted) <= 12:
      ax.set_xticks(sorted(plotted))
    else:
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    better = {1: " (higher is better)", -1: " (lower is better)", 0: ""}[direction(metric)]
    ax.set_ylabel(f"test {metric}{better}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  fig.suptitle("mean over seeds, band: min to max")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def compare(paths: list[str], metrics: list[str] | None, out: str | None,
            by: list[str] | None = None, reference: str | None = None) -> str:
  runs = find_runs(paths)
  metrics = metrics or default_metrics(runs)
  check_metrics(metrics, runs)
  fields, rows = build_rows(runs, metrics, by)
  fixed = floor_rows(runs, fields, metrics)
  if reference:
    fixed += reference_rows(reference, fields, metrics)
  shown = fixed + rows
  if fixed:
    fields = fields or ["variant"]  # The fixed rows' names need a column.
    for row in rows:
      row["fields"] = row["fields"] or {"variant": "all runs"}
  table = markdown(fields, shown, metrics)
  if len(rows) > 1:
    table += "\n\n" + variants_mean(rows, metrics)
  if out:
    os.makedirs(out, exist_ok=True)
    write_csv(os.path.join(out, "compare.csv"), fields, shown, metrics)
    plot_curves(os.path.join(out, "curves.png"), fields, rows, metrics)
  for row in rows:
    for r in row["incomplete"]:
      logging.warning("Left out of the means: %s, %s", r.path, r.progress.describe())
    if len(set(row["seeds"])) != len(row["seeds"]):
      logging.warning("Variant %s has repeated seeds %s: its std understates the seed-to-seed "
                      "spread", row["fields"], row["seeds"])
  return table


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # Orbax reports each metadata read at INFO.
  if len(argv) < 2:
    cli.fail("no run directories given; e.g. python -m aejax.compare /tmp/sweep")
  for path in argv[1:]:
    if problem := rundir.local_path_problem(path):
      cli.fail(problem)
  try:
    print(compare(argv[1:], _METRIC.value, _OUT.value, _BY.value, _REFERENCE.value))
  except UserError as e:
    cli.fail(str(e))
  if _OUT.value:
    print(f"\nWrote {os.path.join(_OUT.value, 'compare.csv')} and "
          f"{os.path.join(_OUT.value, 'curves.png')}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
