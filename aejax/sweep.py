r"""Runs the cross product of config values, each as the `aejax.main` command a user would type.

  python -m aejax.sweep --config=experiments/mlp_ae.py --workdir=/tmp/sweep \
      --sweep="seed=0,1,2" --sweep="model.latents=2,16,32" --config.num_epochs=5

Each run gets `<workdir>/<experiment>-<key>=<value>-...` (e.g. `mlp_ae-seed=0-model.latents=2`)
and is one `python -m aejax.main` subprocess with the same `--config`, the sweep's values as
`--config.<key>=<value>`, and every other main flag and `--config.*` override passed through
unchanged; its console output goes to `<run>/main.log`. A run whose final test line and final
checkpoint are written is skipped; any other is (re)started, and main resumes it from its
checkpoint. Values are split at top-level commas, so `--sweep="model.hidden=(64,),(256, 64)"`
sweeps two tuples.

`--vectorize` trains the runs in this process as vectorised groups instead (aejax.train.
train_group): runs that differ only in `seed` and the fields of `aejax.hparams.FIELDS` share one
compiled program with a leading run axis; every other field splits the sweep into groups, of at
most `--max_group_size` runs. Each run still gets its ordinary run directory.

`--executor=slurm` submits the runs (or, with `--vectorize`, the groups) as the tasks of one Slurm
job array through submitit instead, each task running the command a local sweep would run
(aejax/slurm.py: the --slurm_* flags, preemption and time limits). The sweep waits and reports
each run as a local one does, or with `--detach` returns once submitted; `--status` prints each
run's state.

`--parallel=N` runs N at a time. On GPUs each run gets its own `local GPUs // N` of them through
CUDA_VISIBLE_DEVICES. On CPU the runs simply run concurrently: each keeps the device(s) XLA gives it
(one, unless XLA_FLAGS forces more), and XLA's CPU thread pools compete for the same cores, so it
helps only when one run cannot keep every core busy. TPU hosts run one at a time.
"""

import concurrent.futures
import dataclasses
import difflib
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import ml_collections

from aejax import cli
from aejax import configs
from aejax import main as main_lib  # Defines --config, --workdir and main's flags.
from aejax import slurm  # Defines the --slurm_* flags.
from aejax.data import data_flags  # --data_dir, --manual_dir, --download, as main takes them.
from aejax.run import rundir
from aejax.errors import AejaxError, Diverged, Preempted, UserError

_SWEEP = flags.DEFINE_multi_string(
    "sweep", [], 'A config field and its values, e.g. --sweep="model.latents=2,16,32"; repeat the '
    "flag for more fields: the sweep runs every combination.")
_PARALLEL = flags.DEFINE_integer(
    "parallel", 1, "Runs at a time; GPUs are split evenly between them (see the module doc).")

_VECTORIZE = flags.DEFINE_bool(
    "vectorize", False, "Train runs that differ only in seed and numeric hyperparameters as one "
    "vectorised program per group, in this process (see the module doc).")
_MAX_GROUP_SIZE = flags.DEFINE_integer(
    "max_group_size", None, "--vectorize: at most this many runs per group (device memory).")

_EXECUTOR = flags.DEFINE_enum(
    "executor", "local", ["local", "slurm"], "Where the runs train: on this host (local), or as "
    "the tasks of a Slurm job array, one per run or per --vectorize group (slurm).")
_DETACH = flags.DEFINE_bool("detach", False, "--executor=slurm: return once the job array is "
                            "submitted; --status shows how its runs go.")
_STATUS = flags.DEFINE_bool(
    "status", False, "Print each run's state (done, diverged, running, pending, failed, "
    "incomplete, not started), with its Slurm job, and exit; nothing is started.")
_ONLY = flags.DEFINE_multi_string(
    "only", [], "Train only the runs of the plan with these directory names (repeat the flag); "
    "the Slurm task of a --vectorize group runs the sweep with its runs.")

FLAGS = flags.FLAGS
# Fields a re-run may change: main trains only the missing epochs of a larger num_epochs.
@dataclasses.dataclass
class Run:
  workdir: str
  overrides: list[str]  # The swept values, as --config.<key>=<value>.
  config: ml_collections.ConfigDict  # What main will train, after every override.


# --- The plan ----------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
  """'0,1' -> ['0', '1']; '(64,),(256, 64)' -> ['(64,)', '(256, 64)']: bracketed commas stay."""
  values, depth, start = [], 0, 0
  for i, c in enumerate(text):
    depth += (c in "([{") - (c in ")]}")
    if c == "," and depth == 0:
      values.append(text[start:i].strip())
      start = i + 1
  values.append(text[start:].strip())
  return values


def parse_spec(spec: str, config: ml_collections.ConfigDict) -> tuple[str, list[str]]:
  key, sep, rest = spec.partition("=")
  key = key.strip()
  if not sep or not key:
    raise UserError(f'--sweep={spec!r} is not key=value,value,...; e.g. --sweep="seed=0,1,2"')
  fields = sorted(rundir.flatten(json.loads(config.to_json_best_effort())))
  if key not in fields:
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"--sweep names {key!r}, which is no field of the experiment's config{hint}; "
                    f"sweep a field of aejax/configs.py, e.g. model.latents")
  values = split_values(rest)
  if "" in values:
    raise UserError(f"--sweep={spec!r} has an empty value; separate values by single commas")
  if len(set(values)) != len(values):
    raise UserError(f"--sweep={spec!r} repeats a value; list each value once")
  return key, values


def safe_name(value: str) -> str:
  """A value as a file-name part, the same on every call: '(256, 64)' -> '256,64'."""
  value = re.sub(r"[\s()\[\]{}'\"]", "", value)
  return re.sub(r"[^A-Za-z0-9._,+=-]", "_", value) or "_"


def config_overrides(argv: list[str]) -> list[str]:
  """The --config.<key> arguments of argv as typed (a value given as the next argument included)."""
  out, i = [], 1
  while i < len(argv):
    arg = argv[i]
    match = re.match(r"^--?(no)?(config\..+?)(=|$)", arg)
    if match:
      out.append(arg)
      flag = FLAGS[match.group(2)] if match.group(2) in FLAGS else None
      if "=" not in arg and flag is not None and not flag.boolean and i + 1 < len(argv):
        i += 1
        out.append(argv[i])
    i += 1
  return out


def load_config(config_file: str, overrides: list[str]) -> ml_collections.ConfigDict:
  """The config main will build from the same arguments (a fresh parse by ml_collections)."""
  argv = ["aejax.main", f"--config={config_file}", *overrides]
  flag_values = flags.FlagValues()
  configs.define_config_flag(flag_values, sys_argv=argv)
  try:
    flag_values(argv)
    return flag_values.config
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    raise UserError(f"bad config value ({' '.join(str(e).split())}); give values of the "
                    f"field's type") from e


def experiment_name(config_file: str) -> str:
  """'experiments/vae.py:arg' -> 'vae': the first part of each run's name and of the Slurm job's."""
  return os.path.splitext(os.path.basename(config_file.split(":")[0]))[0]


def plan(config_file: str, root: str, specs: list[str], passed: list[str],
         base: ml_collections.ConfigDict) -> list[Run]:
  """Every run of the sweep, validated before anything starts."""
  if not specs:
    raise UserError('no --sweep given; e.g. --sweep="seed=0,1,2"')
  parsed = [parse_spec(s, base) for s in specs]
  keys = [k for k, _ in parsed]
  if len(set(keys)) != len(keys):
    raise UserError(f"--sweep repeats a key among {keys}; give each key once with all its values")
  overridden = {m.group(2) for a in passed if (m := re.match(r"^--?(no)?config\.([^=]+)", a))}
  if both := overridden.intersection(keys):
    raise UserError(f"{sorted(both)} is both swept and set by --config.<key>; drop one of them")

  experiment = experiment_name(config_file)
  runs, names = [], {}
  for values in itertools.product(*[v for _, v in parsed]):
    name = "-".join([experiment, *(f"{k}={safe_name(v)}" for k, v in zip(keys, values))])
    if name in names:
      raise UserError(f"values {names[name]} and {values} both map to the directory name "
                      f"{name!r}; write them so they differ in letters or digits")
    names[name] = values
    overrides = [f"--config.{k}={v}" for k, v in zip(keys, values)]
    runs.append(Run(os.path.join(root, name), overrides,
                    load_config(config_file, passed + overrides)))
  return runs


def check_existing(run: Run) -> None:
  """An existing run directory must hold this run, or skipping/resuming it would be wrong."""
  if not rundir.is_run(run.workdir):
    return
  # The same rule as main's resume (rundir.config_drift).
  if changed := rundir.config_drift(rundir.read_config(run.workdir), run.config):
    raise UserError(f"{run.workdir} holds a run with another config ({'; '.join(changed)}), "
                    f"which this sweep would resume; pass another --workdir or remove that run")


# --- Devices -----------------------------------------------------------------------------------

def device_envs(parallel: int) -> list[dict[str, str]]:
  """One environment per concurrent slot; on GPUs each names its own share of the devices."""
  if parallel < 1:
    raise UserError(f"--parallel={parallel} must be >= 1")
  if parallel == 1:
    return [{}]
  # A child process asks JAX, so this one never initialises a backend (and never holds GPU memory).
  code = "import jax; print(jax.default_backend(), jax.local_device_count())"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  backend, count = out.stdout.split()[-2:]
  count = int(count)
  if backend == "cpu":
    return [{} for _ in range(parallel)]
  if backend != "gpu":
    raise UserError(f"--parallel={parallel} on {backend} is not supported (one process holds "
                    f"the host's chips); run with --parallel=1")
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  ids = visible.split(",") if visible else [str(i) for i in range(count)]
  return [{"CUDA_VISIBLE_DEVICES": ",".join(share)} for share in split_gpus(ids[:count], parallel)]


def split_gpus(ids: list[str], parallel: int) -> list[list[str]]:
  """`parallel` disjoint, equal shares of the GPU ids; a remainder stays unused."""
  per_run = len(ids) // parallel
  if per_run == 0:
    raise UserError(f"--parallel={parallel} exceeds the {len(ids)} GPUs; use at most {len(ids)}")
  if per_run * parallel < len(ids):
    logging.warning("%d GPUs split %d ways: %d GPU(s) per run, %d unused", len(ids), parallel,
                    per_run, len(ids) - per_run * parallel)
  return [ids[i * per_run:(i + 1) * per_run] for i in range(parallel)]


# --- Running -----------------------------------------------------------------------------------

def main_flags() -> list[str]:
  """main's own flags and the data flags as given, so each run sees them too; not --config and
  --workdir (each run's are its own), nor --force_new (the sweep has applied it to --workdir)."""
  return [FLAGS[f.name].serialize()
          for module in (main_lib, data_flags) for f in FLAGS.get_flags_for_module(module)
          if f.present and f.name not in ("config", "workdir", "force_new")]


def launch(run: Run, command: list[str], env: dict[str, str]) -> tuple[int, float]:
  os.makedirs(run.workdir, exist_ok=True)
  t0 = time.time()
  with open(os.path.join(run.workdir, "main.log"), "a") as log:
    proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                          env={**os.environ, **env})
  return proc.returncode, time.time() - t0


def last_line(path: str) -> str:
  with open(path) as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[-1] if lines else ""


def sweep(argv: list[str]) -> int:
  config_file = FLAGS["config"].config_filename
  passed = config_overrides(argv)
  if FLAGS.force_new:
    if _STATUS.value:
      raise UserError("--status reports the sweep in --workdir as it is; drop --force_new")
    # Decided here, once: the runs, their commands (a Slurm requeue repeats them and resumes),
    # Slurm's folder and the logs all use this directory, and no run's main decides again.
    FLAGS.workdir = rundir.fresh_workdir(FLAGS.workdir)
    logging.info("--force_new: this sweep's workdir is %s; without --force_new, "
                 "--workdir=%s resumes it", FLAGS.workdir, FLAGS.workdir)
  runs = only(plan(config_file, FLAGS.workdir, _SWEEP.value, passed, FLAGS.config), _ONLY.value)
  for run in runs:
    check_existing(run)
  on_slurm = _EXECUTOR.value == "slurm"
  if _VECTORIZE.value and FLAGS["parallel"].present:
    raise UserError("--vectorize trains each group in this process on every device; drop "
                    "--parallel")
  if on_slurm and FLAGS["parallel"].present:
    raise UserError("--parallel is for a local sweep; on Slurm, --slurm_array_parallelism "
                    "bounds the tasks that run at once")
  if _DETACH.value and not on_slurm:
    raise UserError("--detach needs --executor=slurm (a local sweep runs in this process)")
  if _MAX_GROUP_SIZE.value is not None and _MAX_GROUP_SIZE.value < 1:
    raise UserError(f"--max_group_size={_MAX_GROUP_SIZE.value} must be >= 1")
  slurm.check_flags(_EXECUTOR.value)
  if _STATUS.value:
    return status(runs)
  envs = [{}] if on_slurm else device_envs(_PARALLEL.value)
  todo = [r for r in runs if not rundir.is_finished(r.workdir, r.config.num_epochs)]
  # A run that diverged is reported again, not retrained: the same config would diverge again.
  diverged = [r for r in todo if rundir.divergence(r.workdir)]
  todo = [r for r in todo if r not in diverged]
  # A run whose Slurm task is still queued or running is left to it.
  queued = slurm.queue() if on_slurm else {}
  in_queue = [r for r in todo if (slurm.recorded(r.workdir) or {}).get("job_id") in queued]
  todo = [r for r in todo if r not in in_queue]
  logging.info("Sweep of %d runs in %s: %d finished (skipped), %s%s%d to run%s", len(runs),
               FLAGS.workdir, len(runs) - len(todo) - len(diverged) - len(in_queue),
               f"{len(diverged)} diverged (reported, not retrained), " if diverged else "",
               f"{len(in_queue)} queued or running in Slurm (skipped), " if in_queue else "",
               len(todo), " on Slurm" if on_slurm else f", {len(envs)} at a time")
  if todo:
    # Prepare each dataset once, here, so concurrent runs never race to prepare it.
    from aejax.data import dataset
    for name in sorted({r.config.dataset for r in todo}):
      dataset.prepare(name, **data_flags.values())

  common = [sys.executable, "-m", "aejax.main", f"--config={config_file}", *main_flags(), *passed]
  if on_slurm:
    return sweep_slurm(runs, todo, diverged, common, config_file, passed)
  if _VECTORIZE.value:
    return sweep_vectorized(runs, todo, diverged)
  slots = queue.Queue()
  for env in envs:
    slots.put(env)

  def run_one(run: Run) -> tuple[int, float]:
    env = slots.get()
    try:
      logging.info("Starting %s %s", run.workdir, " ".join(f"{k}={v}" for k, v in env.items()))
      return launch(run, [*common, f"--workdir={run.workdir}", *run.overrides], env)
    finally:
      slots.put(env)

  failed = []
  pool = concurrent.futures.ThreadPoolExecutor(len(envs))
  try:
    futures = {pool.submit(run_one, run): run for run in todo}
    for future in concurrent.futures.as_completed(futures):
      rc, seconds = future.result()
      report(futures[future], rc, f"after {seconds:.0f}s", failed, diverged)
  except BaseException:
    # Ctrl-C reached the running children too (same process group): start no further runs.
    pool.shutdown(wait=True, cancel_futures=True)
    raise
  pool.shutdown()
  return finished(runs, failed, diverged)


def report(run: Run, rc: int | str | None, how: str, failed: list[Run], diverged: list[Run],
           other_log: str | None = None) -> None:
  """Logs how a run's command ended (`rc`: its exit status, an error text or None when it left
  none; a group's, for a run of one) and adds a run that did not finish to `failed` or
  `diverged`. A group that exits 4 finished its other runs."""
  if rc in (0, Diverged.exit_code) and rundir.is_finished(run.workdir, run.config.num_epochs):
    logging.info("Finished %s %s", run.workdir, how)
  elif rc == Diverged.exit_code and rundir.divergence(run.workdir):
    diverged.append(run)
  else:
    failed.append(run)
    log = os.path.join(run.workdir, "main.log")
    line = last_line(log) if os.path.exists(log) else ""
    if not line and other_log and os.path.exists(other_log):
      log, line = other_log, last_line(other_log)
    status = f"exit {rc}" if isinstance(rc, int) else (rc or "no exit status")
    logging.error("FAILED %s (%s %s; see %s): %s", run.workdir, status, how, log, line)


def finished(runs: list[Run], failed: list[Run], diverged: list[Run]) -> int:
  """Logs how the sweep ended, naming each diverged run; its exit status: 1 if a run failed,
  else 4 (Diverged) if a run diverged, else 0."""
  for run in diverged:
    record = rundir.divergence(run.workdir)
    logging.error("DIVERGED %s: non-finite loss at step %d (epoch %d); its last good checkpoint "
                  "is kept, and a re-run reports it again: change its config (e.g. a smaller "
                  "learning rate) to train it", run.workdir, record["step"], record["epoch"])
  if failed:
    logging.error("%d of %d runs failed; re-run the same command to resume them", len(failed),
                  len(runs))
    return 1
  if diverged:
    logging.error("%d of %d runs diverged (named above); the others finished", len(diverged),
                  len(runs))
    return Diverged.exit_code
  logging.info("All %d runs finished; compare them: python -m aejax.compare %s", len(runs),
               FLAGS.workdir)
  return 0


def groups(runs: list[Run], max_size: int | None) -> list[list[Run]]:
  """Runs that can share one program (hparams.group_key) and stand at the same step (their
  newest checkpoint, 0 for none), in plan order, split into groups of at most `max_size`.

  A group resumes from the step all its runs have, so runs at different steps (seeds added to an
  interrupted sweep) train in different groups, each run resumed from its own checkpoint."""
  from aejax import hparams

  by_key: dict[tuple[str, int], list[Run]] = {}
  for run in runs:
    steps = rundir.checkpoint_steps(run.workdir)
    by_key.setdefault((hparams.group_key(run.config), steps[-1] if steps else 0), []).append(run)
  size = max_size or max(len(v) for v in by_key.values())
  return [same[i:i + size] for same in by_key.values() for i in range(0, len(same), size)]


def sweep_vectorized(runs: list[Run], todo: list[Run], diverged: list[Run]) -> int:
  """Trains the unfinished runs group by group in this process. A run that diverges stops alone
  and its group trains on. A group that fails otherwise (out of memory, a bad input found late,
  a full disk) has every lock released (train_group); its runs are named FAILED with its error
  on one line, and the sweep goes on to the next group. A stop signal ends the sweep (exit 3),
  and so does an error that every group met alike (its own line and exit code, as a bad input
  found before anything trained is)."""
  from aejax import train

  planned = groups(todo, _MAX_GROUP_SIZE.value) if todo else []
  logging.info("%d groups of sizes %s", len(planned), " ".join(str(len(g)) for g in planned))
  failed, errors = [], []
  for group in planned:
    workdirs = [r.workdir for r in group]
    logging.info("Training a vectorised group of %d: %s", len(group), " ".join(workdirs))
    try:
      train.train_group([r.config for r in group], workdirs, **data_flags.values(),
                        allow_fallback=FLAGS.allow_fallback)
    except Diverged as e:
      logging.error("%s", e)
      diverged.extend(r for r in group if rundir.divergence(r.workdir))
    except Preempted:
      raise
    except Exception as e:  # Whatever failed this group is its runs' failure, not the next's.
      errors.append(e)
      if not isinstance(e, AejaxError):  # A failure of aejax itself: its traceback, once.
        logging.exception("A vectorised group of %d failed", len(group))
      failed.extend(group)
      for run in group:
        logging.error("FAILED %s (in a group of %d): %s", run.workdir, len(group), one_line(e))
  if len(errors) == len(planned) and len({type(e) for e in errors}) == 1 and isinstance(
      errors[0], AejaxError):
    raise errors[0]
  return finished(runs, failed, diverged)


def one_line(e: Exception) -> str:
  """An aejax error's message; a device out of memory as a run alone reports it (naming what to
  lower); any other error's type and the first line of its message."""
  if isinstance(e, AejaxError):
    return str(e)
  if line := cli.out_of_memory(e, cli.TRAIN_MEMORY_FIX):
    return line
  first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
  return f"{type(e).__name__}: {first[:300]}".rstrip(": ")


# --- Slurm --------------------------------------------------------------------------------------

def only(runs: list[Run], names: list[str]) -> list[Run]:
  """The runs named by --only (all without it)."""
  if not names:
    return runs
  by_name = {os.path.basename(r.workdir): r for r in runs}
  if unknown := [n for n in names if n not in by_name]:
    raise UserError(f"--only names {unknown}, which the sweep does not plan; its runs are "
                    f"{sorted(by_name)}")
  return [by_name[n] for n in names]


def sweep_slurm(runs: list[Run], todo: list[Run], diverged: list[Run], common: list[str],
                config_file: str, passed: list[str]) -> int:
  """Submits one array task per run (per group with --vectorize) and, unless --detach, waits
  and reports each run as it ends."""
  if _VECTORIZE.value:
    planned = groups(todo, _MAX_GROUP_SIZE.value) if todo else []
    sweep_cmd = [sys.executable, "-m", "aejax.sweep", f"--config={config_file}",
                 f"--workdir={FLAGS.workdir}", *main_flags(), *passed,
                 *(f"--sweep={s}" for s in _SWEEP.value), "--vectorize",
                 *([FLAGS["max_group_size"].serialize()] if FLAGS["max_group_size"].present
                   else [])]
    commands = [[*sweep_cmd, *(f"--only={os.path.basename(r.workdir)}" for r in group)]
                for group in planned]
  else:
    planned = [[run] for run in todo]
    commands = [[*common, f"--workdir={run.workdir}", *run.overrides] for run in todo]
  failed = []

  def ended(group: list[Run], job_id: str, rc: int | str | None, other_log: str) -> None:
    for run in group:
      report(run, rc, f"as Slurm job {job_id}", failed, diverged, other_log=other_log)

  if planned:
    slurm.run_array(planned, commands, FLAGS.workdir, f"aejax-{experiment_name(config_file)}",
                    _DETACH.value, ended)
    if _DETACH.value:
      return 0
  return finished(runs, failed, diverged)


def status(runs: list[Run]) -> int:
  """Prints one line per run: its state, and its Slurm job where it has one."""
  queued = slurm.queue() if any(slurm.recorded(r.workdir) for r in runs) else {}
  for run in runs:
    detail = ""
    if rundir.is_finished(run.workdir, run.config.num_epochs):
      state = "done"
    elif record := rundir.divergence(run.workdir):
      state, detail = "diverged", f"at step {record['step']}"
    elif record := slurm.recorded(run.workdir):
      state, detail = slurm.state(record["job_id"], queued), f"job {record['job_id']}"
      log = os.path.join(run.workdir, "main.log")
      if state == "failed" and os.path.exists(log):
        detail += f": {last_line(log)}"
    else:
      state = "incomplete" if rundir.is_run(run.workdir) else "not started"
    print(f"{state:<11} {os.path.basename(run.workdir)}  {detail}".rstrip())
  return 0


def main(argv: list[str]) -> None:
  cli.quiet_library_info_logs()
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; set config fields as "
                  f"--config.<key>=<value> and sweep them with --sweep=<key>=<v1>,<v2>")
  cli.run_command(lambda: sweep(sys.argv))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
