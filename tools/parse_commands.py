"""`python tools/parse_commands.py MODULE < argvs.json`: parses each argument list exactly as
`python -m MODULE` would (the module's absl flags, its experiment file and --config.* overrides,
the config's validation, a sweep's plan) without running anything, and prints a JSON list with one
entry per argument list: null when it parses, else the error line the command would print.
"""

import contextlib
import importlib
import io
import json
import sys

from absl import flags

from aejax import cli
from aejax import validation
from aejax.errors import UserError

FLAGS = flags.FLAGS
POSITIONAL = {"aejax.compare"}  # Commands whose arguments are run directories.


def check(name: str, module, argv: list[str], rest: list[str]) -> None:
  if len(rest) > 1 and name not in POSITIONAL:
    raise UserError(f"unexpected arguments {rest[1:]}")
  if name == "aejax.sweep":
    runs = module.plan(FLAGS["config"].config_filename, FLAGS.workdir, FLAGS.sweep,
                       module.config_overrides([name, *argv]), FLAGS.config)
    configs = [run.config for run in runs]
  elif name == "aejax.bench":
    configs = [module.load_experiment(FLAGS.experiment)]
  else:
    configs = [FLAGS.config] if "config" in FLAGS and FLAGS.config is not None else []
  for config in configs:
    validation.validate_config(config, device_count=1)


def main() -> None:
  name = sys.argv[1]
  module = importlib.import_module(name)
  results = []
  for argv in json.load(sys.stdin):
    FLAGS.unparse_flags()
    for flag in [f for f in FLAGS if f.startswith("config.")]:
      delattr(FLAGS, flag)  # The previous command's overrides, defined when it was parsed.
    sys.argv = [name, *argv]  # ml_collections reads the --config.* overrides from sys.argv.
    err = io.StringIO()
    try:
      with contextlib.redirect_stderr(err):
        rest = cli.parse_flags([name, *argv])  # On bad input: one line on stderr, SystemExit.
        check(name, module, argv, rest)
      results.append(None)
    except SystemExit:
      results.append(err.getvalue().strip() or "exit without a message")
    except UserError as e:
      results.append(f"aejax: error: {e}")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
