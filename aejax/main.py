r"""Trains an experiment: `python -m aejax.main --config=experiments/vae.py --workdir=/tmp/vae`.

Any config field can be overridden: `--config.model.latents=32 --config.num_epochs=3`.
Running the same command again resumes from the workdir's latest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from aejax import cli
from aejax import configs
from aejax import train
from aejax.data import data_flags  # --data_dir, --manual_dir, --download.
from aejax.run import rundir

_CONFIG = configs.define_config_flag()
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory on a local or shared file system: checkpoints, metrics, "
    "config; an existing one is resumed from its latest checkpoint.")
_ALLOW_FALLBACK = flags.DEFINE_bool(
    "allow_fallback", False, "If the newest checkpoint cannot be read, set it aside and resume "
    "from the newest readable older one instead of stopping with an error.")
_FORCE_NEW = flags.DEFINE_bool(
    "force_new", False, "If --workdir already holds a run, start afresh in a new sibling "
    "directory <workdir>-2, -3, ... (nothing is deleted). aejax.sweep: the same for its "
    "--workdir, decided once for all its runs; to resume that sweep, pass the new directory "
    "as --workdir without --force_new.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize(): set by launch.sh for multi-process "
    "runs. Without the three flags below JAX detects SLURM, TPU pods and other clusters itself.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 30, "Seconds without a heartbeat after which the other processes "
    "treat a process as dead and exit with an error instead of waiting for it forever.")
flags.mark_flags_as_required(["config", "workdir"])
cli.require_local_paths("workdir")


def initialize_distributed() -> None:
  if not _DISTRIBUTED.value:
    if _COORDINATOR.value or _NUM_PROCESSES.value or _PROCESS_ID.value is not None:
      cli.fail("--coordinator_address/--num_processes/--process_id need --distributed")
    return
  jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value, heartbeat_timeout_seconds=_HEARTBEAT.value,
      initialization_timeout=max(60, 4 * _HEARTBEAT.value))


def main(argv: list[str]) -> None:
  cli.quiet_library_info_logs()
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; config fields are set as --config.<key>=<value>")
  initialize_distributed()
  if jax.process_index() != 0:  # Process 0 reports for everyone.
    logging.set_verbosity(logging.WARNING)
  logging.info("JAX %s: process %d of %d, %d local of %d devices (%s)", jax.__version__,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
  config = _CONFIG.value  # Loaded while the flags were parsed (configs.load_experiment).
  workdir = _WORKDIR.value
  if _FORCE_NEW.value:
    workdir = rundir.fresh_workdir(workdir)
    if jax.process_count() > 1:  # Every process names the same directory before any creates it.
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("workdir chosen")
    logging.info("--force_new: this run's workdir is %s", workdir)

  def train_run() -> None:
    train.train_and_evaluate(config, workdir, **data_flags.values(),
                             allow_fallback=_ALLOW_FALLBACK.value)
  cli.run_command(train_run)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
