"""Runs `python -m MODULE ARGS...` for the tests as a fork of a process that has already imported
what that command imports first (JAX, Flax, Optax, Orbax, grain, TFDS: what its module's
top-level import statements bring in).

A test suite starts a few hundred such commands, and importing those libraries is about two CPU
seconds of each (`python -X importtime -m aejax.main`). This server pays it once: for each
request it forks a child that takes the request's environment, working directory, argv and
stdout/stderr files, then runs the module as `python -m` would (`runpy`, `__main__`), so the
child exits with the code, output and files of a fresh process. A server serves one module:
it runs that module's top-level imports but not the module (its absl flags are defined by each
child's run of it, once), so a child's flags are a fresh process's. Nothing touches a JAX backend
before the fork (the child reads its own XLA_FLAGS, device count included, when it first uses
one; the server refuses to start if an import started one).

What a library reads from the environment at import comes from the server's environment, so a
server serves only requests whose environment equals its own but for VARY_PER_COMMAND;
conftest.run_aejax keeps a server per module and such environment.

Protocol (one JSON object a line): request {"module", "args", "env", "cwd", "stdout", "stderr"}
on stdin; answer {"pid": N} at the fork, then {"returncode": N} at the child's exit.
"""

import json
import os
import sys

# Read after import (XLA_FLAGS when the backend starts) or by nobody (pytest's own variable).
VARY_PER_COMMAND = ("XLA_FLAGS", "PYTEST_CURRENT_TEST")


def _child(request: dict) -> None:
  import runpy

  import numpy as np

  # The protocol's fds stay open (not inheritable, so the child's own children never get them):
  # closing them here would make the interpreter's exit report the closed files on stderr.
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, fd)
    os.close(out)
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  np.random.seed()  # A fresh process's global numpy state is its own draw, not the server's.
  sys.argv = [request["module"], *request["args"]]
  sys.path[0] = request["cwd"]  # As `python -m` puts the working directory first.
  runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
  sys.exit(0)  # The module returned: exit as the interpreter would, running atexit handlers.


def _import_what_it_imports(module: str) -> None:
  """Runs the module's top-level import statements (not the module itself): what a fresh
  `python -m module` imports before anything else, so the absl flags they define are the ones a
  fresh process has, and the module's own are defined by each child's run of it."""
  import ast
  import importlib.util

  from jax._src import xla_bridge

  tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
  imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             and getattr(node, "module", None) != "__future__"]
  exec(compile(ast.Module(imports, type_ignores=[]), module, "exec"), {})
  if xla_bridge._backends:  # A device count fixed now would be every child's.
    sys.exit(f"command_server.py: importing what {module} imports started a JAX backend")


def main() -> None:
  module = sys.argv[1]
  # The protocol on fds of its own: a child's stdout and stderr are its files.
  requests = os.fdopen(os.dup(0), "r")
  answers = os.fdopen(os.dup(1), "w", buffering=1)
  null = os.open(os.devnull, os.O_RDWR)
  os.dup2(null, 0)
  os.close(null)
  os.dup2(2, 1)
  sys.path[0] = os.getcwd()  # As for `python -m`: the repository's aejax.
  _import_what_it_imports(module)
  answers.write(json.dumps({"ready": os.getpid()}) + "\n")
  for line in requests:
    request = json.loads(line)
    assert request["module"] == module, (request["module"], module)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      _child(request)
    answers.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
  main()
