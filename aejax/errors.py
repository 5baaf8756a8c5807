"""The exceptions that end a run with a one-line message and a documented exit code.

`aejax.main` prints `aejax: error: <message>` (or `aejax: <message>` for a preemption) on stderr
and exits with the class's `exit_code`, so scripts and schedulers can tell the cases apart.
"""


class AejaxError(Exception):
  exit_code = 1


class UserError(AejaxError):
  """Bad input (flags, config, experiment file, dataset, paths, workdir); names the fix."""
  exit_code = 2


class Preempted(AejaxError):
  """Stopped on SIGTERM/SIGINT after writing a checkpoint; the same command resumes."""
  exit_code = 3


class Diverged(AejaxError):
  """A non-finite loss; the last good checkpoint is kept and named."""
  exit_code = 4


class StorageError(AejaxError):
  """A file of the run could not be written (e.g. a full disk); what was written before is intact
  and a re-run resumes from it."""
  exit_code = 5
