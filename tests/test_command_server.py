"""conftest.run_aejax forks its commands from tests/command_server.py: each must behave as a fresh
`python -m` process would (its flags, its device count, its exit code and output, its timeout)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, run_aejax

pytestmark = pytest.mark.quick  # The whole file is in the quick tier (docs/development.md).

REFUSED = ["--config=experiments/vae.py", "--config.batch_size=0", "--workdir=/nonexistent/w"]


def _fresh(*args: str, module: str, env: dict[str, str] | None = None):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env={**os.environ, **(env or {})}, capture_output=True, text=True)


@pytest.mark.parametrize("module", ["aejax.compare", "aejax.main"])
def test_a_commands_flags_are_a_fresh_processes(module):
  """aejax.compare imports neither grain nor Orbax, whose absl flags a server that imported
  them would add to its --helpfull (mutation seen: the server importing grain for every
  module)."""
  forked, fresh = run_aejax("--helpfull", module=module), _fresh("--helpfull", module=module)
  assert (forked.returncode, forked.stdout) == (fresh.returncode, fresh.stdout)


def test_each_command_reads_its_own_device_count_and_exits_as_a_fresh_process():
  """One server, three device counts: the XLA_FLAGS of each command, read when it first uses
  a backend (mutation seen: a server that starts its backend before forking serves its own
  device count to every child)."""
  for devices in (4, 1, 2):
    proc = run_aejax(*REFUSED, env={
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{devices} local of {devices} devices (cpu)" in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == "aejax: error: config.batch_size=0 must be >= 1"
    assert proc.stdout == ""


def test_a_command_past_its_timeout_is_killed_and_raises_as_subprocess_run_does(data_dir,
                                                                                 tmp_path):
  with pytest.raises(subprocess.TimeoutExpired):
    run_aejax("--config=experiments/vae.py", f"--workdir={tmp_path / 'w'}",
              f"--data_dir={data_dir}", timeout=1)
  proc = run_aejax(*REFUSED)  # The server is still there for the next command.
  assert proc.returncode == 2, proc.stderr[-2000:]
