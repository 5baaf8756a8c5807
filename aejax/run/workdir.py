"""What a run directory remembers about its config: config.json, drift checks, --force_new."""

import json
import os

import ml_collections

from aejax.run import rundir
from aejax.errors import UserError

# Fields that may change when a run is resumed: they change how long it trains, how often it
# evaluates or saves, or how the work is laid out on devices, not what one step computes.
# (A section's name covers its fields; loop and conv_impl change float rounding at most.)
RESUMABLE = ("num_epochs", "eval_every_epochs", "eval_batch_size", "steps_per_call", "parallel",
             "input_mode", "checkpoint", "loop", "model.conv_impl")


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def config_drift(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for every non-resumable field that differs."""
  old, new = rundir.flatten(saved), rundir.flatten(json.loads(config.to_json_best_effort()))
  resumable = RESUMABLE
  if new.get("opt.schedule") == "cosine":  # Its decay spans num_epochs: more epochs, other rates.
    resumable = tuple(f for f in RESUMABLE if f != "num_epochs")
  changed = []
  for key in sorted(set(old) | set(new)):
    if key in resumable or key.split(".")[0] in resumable or old.get(key) == new.get(key):
      continue
    changed.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
  return changed


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Resuming under another config would silently train a different run: refuse it."""
  if not os.path.exists(config_path(workdir)):
    return
  with open(config_path(workdir)) as f:
    saved = json.load(f)
  if changed := config_drift(saved, config):
    raise UserError(f"{workdir} holds a run with another config ({'; '.join(changed)}); use "
                    f"that config to resume it, or --force_new to start afresh in a new workdir")


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  tmp = config_path(workdir) + ".tmp"
  with open(tmp, "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(tmp, config_path(workdir))


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
