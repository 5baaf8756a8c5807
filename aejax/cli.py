"""The command-line conventions shared by every aejax entry point (main, analyze, compare, sweep):
bad input is one line `aejax: error: ...` on stderr with a documented exit code (aejax/errors.py).
"""

import logging as py_logging
import os
import sys
from typing import Callable

from absl import flags
from absl import logging
import jax

from aejax.errors import AejaxError, Preempted, StorageError, UserError
from aejax.run import rundir


def fail(message: str, exit_code: int = 2) -> None:
  """One line on stderr and a documented exit code (2: bad input; see aejax/errors.py)."""
  print(f"aejax: error: {message}", file=sys.stderr)
  sys.exit(exit_code)


def parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(" ".join(str(e).split()))
  except UserError as e:  # An experiment file that does not load (configs.load_experiment).
    fail(str(e))
  except (AttributeError, KeyError) as e:
    # A --config.<key> override naming no field of the locked config; ml_collections's message
    # holds the key and a "did you mean" suggestion, spread over lines and quotes.
    text = str(e).replace("\\n", " ").translate({ord(c): None for c in "\\'\""})
    key, _, hint = " ".join(text.split()).partition(" ")
    fail(f"unknown config field {key!r}{f' ({hint})' if hint else ''}; the valid fields are "
         f"those of the experiment's config (aejax/configs.py)")


def require_local_paths(*names: str) -> None:
  """Makes each named path flag refuse a bucket URL at parse time (rundir.local_path_problem)."""
  def check(path: str | None) -> bool:
    if problem := rundir.local_path_problem(path):
      raise flags.ValidationError(problem)
    return True
  for name in names:
    flags.register_validator(name, check)


def quiet_library_info_logs() -> None:
  """Orbax logs every save phase at INFO through absl; keep the console for aejax's own lines."""
  noisy = ("/orbax/",)
  logging.get_absl_logger().addFilter(
      lambda r: r.levelno >= py_logging.WARNING or not any(n in r.pathname for n in noisy))


# What a run (aejax.main, a vectorised group of aejax.sweep) can lower when a device runs out of
# memory.
TRAIN_MEMORY_FIX = ("lower --config.eval_memory_bytes (the evaluation's decoded samples; 0 "
                    "takes a quarter of the device's memory), --config.eval_batch_size or "
                    "--config.batch_size, or use a smaller model")


def out_of_memory(error: Exception, fix: str) -> str | None:
  """The one line for XLA's RESOURCE_EXHAUSTED (a device out of memory), naming `fix`; None for
  any other error."""
  text = " ".join(str(error).split())
  if "RESOURCE_EXHAUSTED" not in text:
    return None
  return f"a device ran out of memory ({text[:200]}); {fix}"


def run_command(command: Callable[[], int | None]) -> None:
  """Runs a command's body and exits with its status, turning aejax's errors into one line on
  stderr and their documented exit codes: `aejax: <message>` for a preemption (3: the same
  command resumes), `aejax: error: <message>` otherwise (a device out of memory is exit 2,
  naming TRAIN_MEMORY_FIX); Ctrl-C is 130."""
  try:
    try:
      status = command()
    except jax.errors.JaxRuntimeError as e:
      if line := out_of_memory(e, TRAIN_MEMORY_FIX):
        raise UserError(line) from e
      raise
  except Preempted as e:
    print(f"aejax: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  except (UserError, StorageError) as e:
    # UserError is raised at start-up, before anything is written; StorageError after the failed
    # save was waited for (metrics are flushed line by line): nothing is left to wait for.
    # os._exit rather than sys.exit: after orbax fails to read or write a checkpoint,
    # TensorStore callbacks into its closed event loop print tracebacks at interpreter shutdown,
    # which would bury the one-line error.
    print(f"aejax: error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(e.exit_code)
  except AejaxError as e:
    fail(str(e), e.exit_code)
  except KeyboardInterrupt:
    print("aejax: interrupted; the same command resumes", file=sys.stderr)
    sys.exit(130)
  sys.exit(status or 0)
