"""The run directory: one rule decides whether a config may resume a run, for main and sweep;
its files are written whole, and a cut-off metrics line is set aside on resume."""

import json
import os
import subprocess
import sys

import pytest

from aejax import configs
from aejax.errors import StorageError, UserError
from aejax.run import rundir
from aejax.run import storage
from conftest import REPO

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).


def test_main_and_sweep_share_the_resume_rule(tmp_path):
  from aejax import sweep

  saved = configs.base()
  rundir.write_config(str(tmp_path), saved)
  resumable = configs.base()
  resumable.num_epochs, resumable.eval_batch_size = 20, 500  # How long, how evaluated: fine.
  rundir.check_resumable(str(tmp_path), resumable)
  sweep.check_existing(sweep.Run(str(tmp_path), [], resumable))
  other = configs.base()
  other.model.latents = 3
  with pytest.raises(UserError, match="model.latents: 32 -> 3"):
    rundir.check_resumable(str(tmp_path), other)
  with pytest.raises(UserError, match="model.latents: 32 -> 3"):
    sweep.check_existing(sweep.Run(str(tmp_path), [], other))


def test_a_field_added_after_a_run_was_saved_is_drift_only_away_from_its_default(tmp_path):
  saved = json.loads(configs.base().to_json_best_effort())
  del saved["input"]["train_split"]  # A run saved before the field existed.
  assert rundir.config_drift(saved, configs.base()) == []
  other = configs.base()
  other.input.train_split = "train[:90%]"
  assert rundir.config_drift(saved, other) == [
      "input.train_split: '<absent>' -> 'train[:90%]'"]


def test_compare_reads_a_run_saved_before_a_field_existed_as_trained_at_its_default(tmp_path):
  """Mutation: compare reading the saved config as it is makes the two runs two variants (the
  field None against its default)."""
  from aejax import compare

  old, new = str(tmp_path / "old"), str(tmp_path / "new")
  for workdir in (old, new):
    os.makedirs(workdir)
    rundir.write_config(workdir, configs.base())
  saved = json.loads(open(rundir.config_path(old)).read())
  del saved["model"]["num_pseudo"]  # A run saved before the field existed.
  with open(rundir.config_path(old), "w") as f:
    json.dump(saved, f)
  runs = [compare.Run.read(old), compare.Run.read(new)]
  assert runs[0].config["model.num_pseudo"] == configs.base().model.num_pseudo
  assert compare.variant_fields(runs) == []


def test_the_resume_sets_aside_a_cut_off_last_line_and_the_lines_after_its_checkpoint(
    tmp_path, caplog):
  """Both leave metrics.jsonl for metrics.set-aside.jsonl beside it, as they were, and the log
  names that file. Mutations: rewriting only when a complete line goes (not for a cut-off one)
  leaves the cut-off line, which the next append would extend into a bad line; rewriting without
  first appending to the set-aside file deletes the lines."""
  lines = [json.dumps({"step": s, "epoch": s // 10, "split": "train", "loss": 1.0 / s})
           for s in (10, 20, 30)]
  path, aside = tmp_path / rundir.METRICS, tmp_path / rundir.METRICS_SET_ASIDE
  path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # A full disk cut the third.
  assert [r["step"] for r in rundir.read_metrics(str(tmp_path))] == [10, 20]
  rundir.set_aside_metrics_after(str(tmp_path), 20)  # Nothing after the checkpoint but the cut.
  assert path.read_text() == "\n".join(lines[:2]) + "\n"
  assert aside.read_text() == lines[2][:25] + "\n"
  rundir.set_aside_metrics_after(str(tmp_path), 10)
  assert path.read_text() == lines[0] + "\n"
  assert aside.read_text() == lines[2][:25] + "\n" + lines[1] + "\n"
  assert f"set aside in {aside}" in caplog.text
  rundir.set_aside_metrics_after(str(tmp_path), 10)  # Nothing to set aside: both stay as they are.
  assert path.read_text() == lines[0] + "\n"
  assert aside.read_text() == lines[2][:25] + "\n" + lines[1] + "\n"


def test_a_small_file_is_written_whole_or_not_at_all(tmp_path):
  """Mutation: storage.atomic writing `path` in place leaves the cut file behind."""
  path = str(tmp_path / "config.json")
  with storage.atomic(path) as f:
    f.write("old")
  with pytest.raises(ZeroDivisionError):
    with storage.atomic(path) as f:
      f.write("half of the new")
      1 / 0  # pylint: disable=pointless-statement
  assert os.listdir(tmp_path) == ["config.json"] and open(path).read() == "old"
  with pytest.raises(StorageError, match=rf"^could not write {tmp_path}/x/y \(No such file or "
                     rf"directory; [0-9.]+ [kMG]?B free there\); free space"):
    with storage.atomic(str(tmp_path / "x" / "y")) as f:
      f.write("a folder that is not there")


def test_metrics_and_tensorboard_writes_that_fail_are_storage_errors_naming_the_file(tmp_path):
  """Mutation: MetricWriter.write without storage.writing around the TensorBoard writer lets
  the OSError through (a traceback and exit 1 in aejax.main)."""
  from aejax.run import metrics

  (tmp_path / "tensorboard").write_text("")  # A file where the event files' folder goes.
  writer = metrics.MetricWriter(str(tmp_path))
  with pytest.raises(StorageError, match=rf"^could not write {tmp_path}/tensorboard \("):
    writer.write(1, 1, "train", {"loss": 1.0})
  assert [r["loss"] for r in rundir.read_metrics(str(tmp_path))] == [1.0]  # Written before.
  os.remove(tmp_path / rundir.METRICS)
  os.mkdir(tmp_path / rundir.METRICS)  # A folder where metrics.jsonl goes.
  with pytest.raises(StorageError, match=rf"^could not write {tmp_path}/metrics.jsonl \(Is a "
                     rf"directory; .* free there\)"):
    writer.write(2, 2, "train", {"loss": 0.5})


@pytest.mark.parametrize("module, args", [
    ("aejax.main", [f"--config={REPO}/experiments/vae.py", "--workdir=gs://bucket/vae"]),
    ("aejax.sweep", [f"--config={REPO}/experiments/vae.py", "--workdir=gs://bucket/sweep",
                     "--sweep=seed=0,1"]),
    ("aejax.analyze", ["--workdir=gs://bucket/vae"]),
    ("aejax.compare", ["gs://bucket/sweep"]),
])
def test_a_bucket_workdir_is_one_line_exit_2_and_writes_nothing(tmp_path, module, args):
  # The run directory's lock, renames and appends need a POSIX file system; without this check a
  # local folder named `gs:` appeared beside the bucket Orbax wrote to.
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True,
                        text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
  assert proc.returncode == 2, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("aejax: error:")]
  assert len(errors) == 1 and "bucket URL" in errors[0] and "file system" in errors[0], proc.stderr
  assert list(tmp_path.iterdir()) == []  # No `gs:` folder.
