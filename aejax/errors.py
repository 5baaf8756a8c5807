"""The one exception type for bad input (flags, configs, paths, data).

`aejax.main` reports it as a single line on stderr and exits with code 2, so a typo never turns
into a traceback or, worse, a run that silently trains on the wrong thing.
"""


class UserError(Exception):
  """Bad input from the user; the message names the problem and the fix."""
