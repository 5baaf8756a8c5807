"""The layout of a run directory, and the one reader and writer of its config and metrics.

A run directory is what `aejax.main` writes: `config.json`, `metrics.jsonl`, `checkpoints/<step>/`
and, once `aejax.analyze` has run, `analysis/metrics.json`. This module writes config.json,
decides whether a config may resume a run (main and sweep), picks a fresh directory for
--force_new, and reads everything back (sweep, compare, analyze, restore) without an accelerator
or any checkpoint array.
"""

import dataclasses
import json
import math
import os
from typing import Any

from absl import logging
import ml_collections

from aejax import configs
from aejax.errors import UserError
from aejax.run import storage

CONFIG = "config.json"
METRICS = "metrics.jsonl"
# Lines of metrics.jsonl past a resume point, moved out of it (set_aside_metrics_after).
METRICS_SET_ASIDE = "metrics.set-aside.jsonl"
CHECKPOINTS = "checkpoints"
ANALYSIS = os.path.join("analysis", "metrics.json")
# The `split` of the metrics line that records a divergence (its step: the first non-finite one).
DIVERGED = "diverged"


def local_path_problem(path: str | None) -> str | None:
  """Why `path` cannot hold run directories, or None. A run directory needs what a POSIX file
  system gives and an object store does not: an exclusive lock (one process per workdir), atomic
  renames (config.json, analysis/, set-aside checkpoints) and appended lines (metrics.jsonl)."""
  if path and "://" in path:
    return (f"{path} is a bucket URL, but a run directory needs a POSIX file system (a lock, "
            f"atomic renames, appended metrics lines); pass a path on a file system every host "
            f"mounts (NFS, Filestore, Lustre), e.g. /shared/runs/vae")
  return None


def is_run(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG))


def read_config(run_dir: str) -> dict[str, Any]:
  path = os.path.join(run_dir, CONFIG)
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path} ({e}); pass a directory written by aejax.main") from e


def _metrics_lines(path: str) -> tuple[list[tuple[str, dict[str, Any]]], str]:
  """(each complete line of metrics.jsonl with its record, a cut-off last line or '').

  A last line without its newline is a write cut short (a crash, a full disk): it is left out,
  with a warning.
  """
  if not os.path.exists(path):
    return [], ""
  with open(path) as f:
    lines = f.read().split("\n")
  if cut_off := lines[-1]:
    logging.warning("Ignoring the unfinished last line of %s", path)
  records = []
  for i, line in enumerate(lines[:-1], 1):
    try:
      r = json.loads(line)
      _ = r["split"], r["epoch"], r["step"]  # A KeyError (TypeError) if it is not a record.
      records.append((line, r))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise UserError(f"{path} line {i} is not a metrics record ({e}); repair or remove that "
                      f"line") from e
  return records, cut_off


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
  """The records of metrics.jsonl; [] when the run has not finished an epoch yet.

  Where one (split, epoch) appears twice (an attempt that was redone), the later line wins.
  """
  records = {(r["split"], r["epoch"]): r
             for _, r in _metrics_lines(os.path.join(run_dir, METRICS))[0]}
  return sorted(records.values(), key=lambda r: (r["epoch"], r["split"] != "train"))


def set_aside_metrics_after(run_dir: str, step: int) -> None:
  """Moves the lines of metrics.jsonl written after `step` (work a resume redoes) and a cut-off
  last line (which the next append would extend) to the end of metrics.set-aside.jsonl beside
  it, as they were: nothing is deleted. They are appended there before metrics.jsonl is
  rewritten, so a crash in between leaves them in both files, never in neither."""
  path = os.path.join(run_dir, METRICS)
  records, cut_off = _metrics_lines(path)
  moved = [line for line, r in records if r["step"] > step] + ([cut_off] if cut_off else [])
  if not moved:
    return
  aside = os.path.join(run_dir, METRICS_SET_ASIDE)
  with storage.writing(aside), open(aside, "a") as f:
    f.writelines(line + "\n" for line in moved)
  with storage.atomic(path) as f:
    f.writelines(line + "\n" for line, r in records if r["step"] <= step)
  logging.warning("%d line(s) of %s written after the checkpoint at step %d set aside in %s",
                  len(moved), path, step, aside)


def checkpoint_steps(run_dir: str) -> list[int]:
  """Steps of the finalized checkpoints, ascending (orbax's own reading of the directory)."""
  from orbax.checkpoint import utils as ocp_utils

  ckpt_dir = os.path.join(run_dir, CHECKPOINTS)
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(ocp_utils.checkpoint_steps(ckpt_dir))


def count_params(run_dir: str) -> int | None:
  """Parameters of the model in the latest checkpoint, from orbax's metadata (no arrays read)."""
  steps = checkpoint_steps(run_dir)
  if not steps:
    return None
  from etils import epath
  import jax
  import orbax.checkpoint as ocp

  path = epath.Path(run_dir) / CHECKPOINTS / str(steps[-1]) / "state"
  tree = ocp.StandardCheckpointHandler().metadata(path)
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree["params"]))


def read_analysis(run_dir: str) -> dict[str, float]:
  """The scalar numbers of analysis/metrics.json as flat dotted keys; {} when absent; UserError
  naming the file when it cannot be read."""
  path = os.path.join(run_dir, ANALYSIS)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      tree = json.load(f)
  except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors.
    raise UserError(f"cannot read {path} ({e}); re-run aejax.analyze --workdir={run_dir}") from e
  return {k: v for k, v in flatten(tree).items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'model': {'latents': 2}} -> {'model.latents': 2}; lists become tuples (hashable)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
  return out


@dataclasses.dataclass
class Progress:
  """How far a run got, read from its metrics alone."""
  num_epochs: int  # What its config asks for.
  epochs_trained: int  # The last epoch with a train line.
  final_test: dict[str, Any] | None  # The test line at epoch num_epochs, if written.

  @property
  def complete(self) -> bool:
    return self.final_test is not None

  def describe(self) -> str:
    if self.complete:
      return "complete"
    missing = ", no final test line" if self.epochs_trained >= self.num_epochs else ""
    return f"incomplete (epoch {self.epochs_trained}/{self.num_epochs}{missing})"


def progress(num_epochs: int, records: list[dict[str, Any]]) -> Progress:
  trained = max((r["epoch"] for r in records if r["split"] == "train"), default=0)
  final = [r for r in records if r["split"] == "test" and r["epoch"] == num_epochs]
  return Progress(num_epochs, trained, final[-1] if final else None)


def divergence(run_dir: str) -> dict[str, Any] | None:
  """The metrics line recording that the run diverged, or None. A resume drops it with the other
  lines after the checkpoint, so it stands only while nobody has re-run the run alone."""
  diverged = [r for r in read_metrics(run_dir) if r["split"] == DIVERGED]
  return diverged[-1] if diverged else None


def is_finished(run_dir: str, num_epochs: int) -> bool:
  """The final test line is written and the latest checkpoint is at its step.

  Both: the final checkpoint is on disk before the final evaluation starts, and a run killed
  during that evaluation holds it without the test line; its re-run evaluates it alone.
  """
  final = progress(num_epochs, read_metrics(run_dir)).final_test
  steps = checkpoint_steps(run_dir)
  return final is not None and bool(steps) and steps[-1] == final["step"]


# --- Config: write, compare on resume, fresh directories ---------------------------------------

# Fields that may change when a run is resumed: they change how long it trains, how often it
# evaluates or saves, or how the work is laid out on devices, not what one step computes.
# (A section's name covers its fields; loop and conv_impl change float rounding at most.)
RESUMABLE = ("num_epochs", "eval_every_epochs", "eval_batch_size", "eval_sample_chunk",
             "eval_memory_bytes", "steps_per_call", "parallel", "input_mode", "checkpoint", "loop",
             "model.conv_impl")


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def with_added_fields(saved_flat: dict) -> dict:
  """A saved config (flat) with every field added to aejax after the run was saved, at its
  default: what the run trained with, since a new field's default leaves the old behaviour."""
  defaults = flatten(json.loads(configs.base().to_json_best_effort()))
  return {**{k: v for k, v in defaults.items() if k not in saved_flat}, **saved_flat}


def config_drift(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for every non-resumable field that differs."""
  old, new = flatten(saved), flatten(json.loads(config.to_json_best_effort()))
  resumable = RESUMABLE
  if new.get("opt.schedule") == "cosine":  # Its decay spans num_epochs: more epochs, other rates.
    resumable = tuple(f for f in RESUMABLE if f != "num_epochs")
  # A field added to aejax after the run was saved, at its default, is what the run trained with.
  added = {k: v for k, v in with_added_fields(old).items() if k not in old}
  changed = []
  for key in sorted(set(old) | set(new)):
    if key in resumable or key.split(".")[0] in resumable or old.get(key) == new.get(key):
      continue
    if key in added and new.get(key) == added[key]:
      continue
    changed.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
  return changed


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Resuming under another config would silently train a different run: refuse it."""
  if not is_run(workdir):
    return
  if changed := config_drift(read_config(workdir), config):
    raise UserError(f"{workdir} holds a run with another config ({'; '.join(changed)}); use "
                    f"that config to resume it, or --force_new to start afresh in a new workdir")


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  with storage.atomic(config_path(workdir)) as f:
    f.write(config.to_json_best_effort(indent=2))


def fresh_workdir(workdir: str) -> str:
  """`workdir` if it holds no run yet, else the first free sibling `<workdir>-2`, `-3`, ...

  Nothing is ever deleted. A counter rather than a timestamp, so that every process of a
  multi-process run picks the same name.
  """
  if not os.path.exists(workdir) or not os.listdir(workdir):
    return workdir
  n = 2
  while os.path.exists(f"{workdir.rstrip('/')}-{n}"):
    n += 1
  return f"{workdir.rstrip('/')}-{n}"
