"""Shared fixtures: the real MNIST, prepared once per test run by TFDS.

TFDS downloads it unless `--manual_dir` names a folder holding the four original MNIST archives
(hosts without internet; this repository's CI passes its own copy); `--data_dir` keeps the
prepared TFDS data dir, to reuse it in later runs.
"""

import fcntl
import json
import locale
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from command_server import VARY_PER_COMMAND

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Catch accidental broadcasting between [B] and [B, 1] shaped terms.
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_addoption(parser):
  parser.addoption("--manual_dir", default=os.environ.get("AEJAX_MANUAL_DIR"),
                   help="folder holding the original MNIST archives (default: TFDS "
                   "downloads MNIST)")
  parser.addoption("--data_dir", default=os.environ.get("AEJAX_TEST_DATA_DIR"),
                   help="TFDS data dir to prepare MNIST in and reuse (default: a temp dir)")
  parser.addoption("--compilation_cache_dir", default=None,
                   help="JAX's persistent compilation cache for every process of the run, kept "
                   "for later runs (default: a temp dir of this run)")


# XLA's CPU backend with LLVM's optimisation off, for the commands the family and dataset tests
# start: their programs are small and run briefly, but every process compiles its own, and
# compiling is most of their time. Measured (CPU, 2 cores, shared, load 4-5; two runs
# each, alternating): test_datasets_mock.py, 13 commands, took 106 and 100 CPU seconds at the
# default level, 92 and 76 at 0; the 300-step hvae run of test_hvae ends at the same test NLL
# (167.12) either way. Numbers agree to float rounding: XLA's own passes run at any level. Not
# for the 4-device runs of start_on_4_devices, whose 300 steps it slows more than it saves: the
# hvae one took 31 and 36 CPU seconds at the default level, 40 and 48 at 0.
QUICK_COMPILE = "--xla_backend_optimization_level=0"


def quick_compile(env: dict[str, str] | None = None) -> dict[str, str]:
  """`env` (for run_aejax or a Popen) with QUICK_COMPILE added to its (or this process's)
  XLA_FLAGS."""
  env = dict(env or {})
  flags = env.get("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  return {**env, "XLA_FLAGS": f"{flags} {QUICK_COMPILE}".strip()}


class CommandServer:
  """A tests/command_server.py process: `python -m MODULE` commands as forks of one that has
  imported their libraries once (that module says why and how)."""

  def __init__(self, module: str, env: dict[str, str]):
    self.module = module
    self.proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "command_server.py"), module],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env)
    self.buffer = b""
    self._answer(timeout=300)  # {"ready": pid}

  def _answer(self, timeout: float | None) -> dict:
    deadline = None if timeout is None else time.monotonic() + timeout
    while b"\n" not in self.buffer:
      wait = None if deadline is None else max(0.0, deadline - time.monotonic())
      if not select.select([self.proc.stdout], [], [], wait)[0]:
        raise TimeoutError
      chunk = os.read(self.proc.stdout.fileno(), 65536)
      if not chunk:
        raise RuntimeError(f"tests/command_server.py exited with {self.proc.wait()}; its "
                           "output is in the test's captured stderr")
      self.buffer += chunk
    line, self.buffer = self.buffer.split(b"\n", 1)
    return json.loads(line)

  def close(self) -> None:
    self.proc.stdin.close()  # The server ends at the end of its requests.
    self.proc.wait()

  def run(self, args: list[str], env: dict[str, str], timeout: float,
          out_dir: str) -> subprocess.CompletedProcess:
    module = self.module
    stdout, stderr = os.path.join(out_dir, "stdout"), os.path.join(out_dir, "stderr")
    request = {"module": module, "args": list(args), "env": env, "cwd": REPO, "stdout": stdout,
               "stderr": stderr}
    self.proc.stdin.write((json.dumps(request) + "\n").encode())
    self.proc.stdin.flush()
    pid = self._answer(timeout=60)["pid"]
    cmd = [sys.executable, "-m", module, *args]
    try:
      returncode = self._answer(timeout)["returncode"]
    except TimeoutError:
      os.kill(pid, signal.SIGKILL)  # As subprocess.run does at its timeout.
      self._answer(None)
      raise subprocess.TimeoutExpired(cmd, timeout, _read(stdout), _read(stderr)) from None
    return subprocess.CompletedProcess(cmd, returncode, _read(stdout), _read(stderr))


def _read(path: str) -> str:
  with open(path, encoding=locale.getpreferredencoding(False)) as f:  # As text=True reads.
    return f.read()


# The servers of this process, the most recently used last; a few at once (each holds the
# imports, ~300 MB).
_SERVERS: dict[tuple[str, frozenset], CommandServer] = {}
MAX_SERVERS = 3


def run_aejax(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
              module: str = "aejax.main") -> subprocess.CompletedProcess:
  """Runs `python -m <module> args...` from the repo root, as a user would: its exit code,
  output and files are a fresh process's (forked from a CommandServer of this environment)."""
  full_env = {**os.environ, **(env or {})}
  if os.environ.get("AEJAX_TEST_FRESH_PROCESSES") == "1":  # Each command its own interpreter.
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
  key = (module, frozenset((k, v) for k, v in full_env.items() if k not in VARY_PER_COMMAND))
  server = _SERVERS.pop(key, None) or CommandServer(module, full_env)
  _SERVERS[key] = server
  while len(_SERVERS) > MAX_SERVERS:
    _SERVERS.pop(next(iter(_SERVERS))).close()
  with tempfile.TemporaryDirectory() as out_dir:
    return server.run(args, full_env, timeout, out_dir)


def saved_state(workdir: str, step: int | None = None) -> tuple[dict, dict]:
  """(state, meta) of a run's checkpoint at `step` (default: the newest) as it was saved, a
  nested dict of arrays on this process's first device, whatever device count wrote it."""
  import orbax.checkpoint as ocp
  from aejax.run import checkpoint

  with checkpoint.manager(os.path.join(workdir, "checkpoints"), max_to_keep=3) as mngr:
    step = mngr.latest_step() if step is None else step
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            mngr.item_metadata(step).state)
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return restored.state, dict(restored.meta)


def _run_temp(tmp_path_factory):
  """This run's temp dir, the same for every pytest-xdist worker (each has its own below it)."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(request, tmp_path_factory):
  """One persistent JAX compilation cache for this run's test processes and every process they
  start: the suite compiles the same small programs in hundreds of fresh processes, and a
  cached executable is the one XLA would compile again (the key covers the program, the
  devices and the XLA flags), so only the time changes."""
  path = (request.config.getoption("compilation_cache_dir")
          or str(_run_temp(tmp_path_factory) / "jax_cache"))
  settings = {"jax_compilation_cache_dir": path,  # Every program, however quick to compile.
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0,
              # By default JAX puts a GPU autotuning folder inside the cache dir into every
              # program's compile options, and so the dir's path into every key: a cache moved
              # or copied elsewhere would never hit. The tests run on CPUs, which autotune nothing.
              "jax_persistent_cache_enable_xla_caches": "none"}
  for name, value in settings.items():
    jax.config.update(name, value)  # This process,
    os.environ[name.upper()] = str(value)  # and the ones it starts.
  return path


@pytest.fixture(scope="session")
def data_dir(request, tmp_path_factory) -> str:
  """A TFDS data dir holding the real MNIST, prepared by TFDS from the manual dir."""
  # Under pytest-xdist (`-n 2`) the workers share one data dir, and the first to take the lock
  # prepares it for all.
  shared = _run_temp(tmp_path_factory)
  data_dir = request.config.getoption("data_dir") or str(shared / "tfds")
  manual_dir = request.config.getoption("manual_dir")
  args = [f"data_dir={data_dir!r}"]
  if manual_dir:
    args.append(f"manual_dir={os.path.abspath(manual_dir)!r}")
  # A subprocess, so TensorFlow (imported by TFDS to prepare) never enters the test process.
  code = f"from aejax.data import dataset; dataset.prepare('mnist', {', '.join(args)})"
  with open(shared / "tfds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  if proc.returncode:
    pytest.fail("could not prepare MNIST (without internet, pass --manual_dir=<folder with the "
                "four MNIST archives>): " + proc.stderr.strip().splitlines()[-1])
  return data_dir


@pytest.fixture(scope="session")
def mnist(data_dir):
  """(train_images, train_labels, test_images, test_labels) as uint8/int32 host arrays."""
  from aejax.data import dataset

  builder_dir = dataset.prepare("mnist", data_dir)
  return (*dataset.load_split(builder_dir, "train"), *dataset.load_split(builder_dir, "test"))


def posterior_streams(stream):
  """sampling.streams whose posterior stream is `stream` itself (a sampling.Stream, or raw keys:
  one key, or one per example): a test that draws the model's noise from it scores the
  objective's own draws."""
  from aejax import sampling

  stream = sampling.as_stream(stream)
  return sampling.streams(stream)._replace(posterior=stream)


def assert_same_training(actual, desired) -> None:
  """Parameters after the same training on two device layouts (1 device, a mesh, pmap, processes).

  The gradient all-reduce sums in another order than one device does, and Adam divides by
  sqrt(v) + eps, which turns float32 rounding of near-zero gradients (border pixels, units that
  rarely fire) into visible update differences for a few weights. So: all but 1 in 10^4 weights
  agree to rtol 1e-5, and every weight agrees to 1e-4.

  What that lets through. Every caller trains with Adam at lr 1e-3 (b1 0.9, b2 0.999), whose step
  moves a weight by lr m/(sqrt(v) + eps): about lr = 1e-3 under a steady gradient and at most
  lr (1 - b1) / sqrt(1 - b2) = 3.2e-3, so 1e-4 is a tenth of a typical step and 3% of the largest.
  A layout that skips, repeats or misroutes one step of a layer fails; a fault that moves no
  weight by more than a tenth of a step passes. The count lets 1 in 10^4 weights differ up to that
  bound: 10 of the 105,144 of the VAE with hidden=(64,) the parallel tests train, 81 of the
  815,824 of experiments/vae.py, so a fault confined to a bias of that size passes. No tolerance
  on the parameters sees a gradient off by a constant factor (a sum over devices where a mean is
  meant): Adam's m/sqrt(v) cancels it, which is why tests/parallel_equivalence.py compares the
  losses and gradient norms too.
  """
  total = off = 0
  for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
    a, d = np.asarray(a), np.asarray(d)
    np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-4)
    off += int(np.sum(~np.isclose(a, d, rtol=1e-5, atol=1e-7)))
    total += a.size
  assert off <= total * 1e-4, f"{off} of {total} weights differ beyond rtol 1e-5"


# --- The Slurm tests: against a real Slurm (CI starts one with tools/slurm_local.sh). Without one
# they skip with one line saying how to start it, except in CI (CI=true), where they fail.

def start_on_4_devices(call: str) -> subprocess.Popen:
  """Starts `call` (Python, e.g. "import test_x; test_x._train(...)") in a process of its own
  with 4 CPU devices, run from tests/ with the repository importable; its output is piped. A
  module starts its 4-device run this way first, so that it trains while the module's own
  process works (the 1-device run, the value tests)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
  return subprocess.Popen([sys.executable, "-c", call], cwd=os.path.join(REPO, "tests"),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def refusal(config, field: str, value) -> str:
  """The one line validation refuses `config` with, once its `field` (`batch_size` or a field
  of config.objective) is `value`."""
  from aejax import validation
  from aejax.errors import UserError

  if field == "batch_size":
    config.batch_size = value
  else:
    config.objective[field] = value
  with pytest.raises(UserError) as e:
    validation.validate_config(config, 1)
  return str(e.value)


def run_on_4_devices(call: str) -> None:
  """Runs `call` as start_on_4_devices does and asserts that it exits 0."""
  proc = start_on_4_devices(call)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-3000:]


def assert_pmap_matches_one_device(loss, *args_BxD) -> np.ndarray:
  """On 4 devices (run under start_on_4_devices): `loss(*args, axis_name=...)` on each device's
  quarter of the rows, averaged over the devices as the trainer averages them, and its gradient
  with respect to every argument's rows equal `loss(*args)` on one device. A device's gradient
  also holds what its rows contribute to the other devices' losses (a collective's transpose
  sums them), so a quarter of it is the global loss's. Returns the 4 devices' values."""
  n = jax.device_count()
  argnums = tuple(range(len(args_BxD)))
  one = jax.jit(jax.value_and_grad(loss, argnums=argnums))(*args_BxD)
  split = lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:])
  per_device = jax.pmap(jax.value_and_grad(lambda *a: loss(*a, axis_name="d"), argnums=argnums),
                        axis_name="d")(*map(split, args_BxD))
  np.testing.assert_allclose(float(np.mean(per_device[0])), float(one[0]), rtol=1e-5)
  for g_n, g_1 in zip(per_device[1], one[1]):
    np.testing.assert_allclose(np.asarray(g_n).reshape(g_1.shape) / n, np.asarray(g_1),
                               rtol=1e-4, atol=1e-6)
  return np.asarray(per_device[0])


SLURM_START = 'eval "$(tools/slurm_local.sh start)" (as root), then run pytest in that shell'


def require_slurm() -> None:
  try:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=30)
    states = proc.stdout.split() if proc.returncode == 0 else []
  except (OSError, subprocess.TimeoutExpired):
    states = []
  if not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
    why = f"no Slurm node is up (sinfo: {states or 'none'}); start one: {SLURM_START}"
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(why)


def slurm_job(job_id: str) -> dict[str, str]:
  """`scontrol show job` of a job Slurm still holds (MinJobAge: 300 s after it ends)."""
  out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                       text=True, check=True).stdout
  return dict(f.split("=", 1) for f in out.split() if "=" in f)


def slurm_queued(job_id: str) -> bool:
  """Whether a job (or any task of an array) is still in the queue."""
  out = subprocess.run(["squeue", "-h", "-r", "-j", job_id.split("_")[0], "-o", "%i"],
                       capture_output=True, text=True).stdout.split()
  return job_id in out if "_" in job_id else bool(out)


def wait_for_file_line(path: str, text: str, timeout: float = 300) -> None:
  """Polls until a line of `path` holds `text`."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(path) and any(text in line for line in open(path, errors="replace")):
      return
    time.sleep(0.05)
  raise AssertionError(f"no line with {text!r} in {path} within {timeout}s")
