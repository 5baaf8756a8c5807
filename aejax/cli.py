"""The command-line conventions shared by every aejax entry point (main, analyze, compare, sweep):
bad input is one line `aejax: error: ...` on stderr with a documented exit code (aejax/errors.py).
"""

import logging as py_logging
import sys

from absl import flags
from absl import logging

from aejax.errors import UserError


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


def quiet_library_info_logs() -> None:
  """Orbax logs every save phase at INFO through absl; keep the console for aejax's own lines."""
  noisy = ("/orbax/",)
  logging.get_absl_logger().addFilter(
      lambda r: r.levelno >= py_logging.WARNING or not any(n in r.pathname for n in noisy))
