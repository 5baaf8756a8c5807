"""Data parallelism: one device, a jit mesh and pmap agree; several processes agree with one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_same_training, run_aejax, saved_state

TINY_VAE = ["--config=experiments/vae.py", "--config.batch_size=6000",  # 10 steps an epoch.
            "--config.model.hidden=(64,)"]


def _cpu_env(devices: int) -> dict[str, str]:
  return {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _launch(*args, **kwargs) -> subprocess.Popen:
  env = {**os.environ, "PYTHON": sys.executable}
  return subprocess.Popen([os.path.join(REPO, "launch.sh"), *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _final_state(workdir):
  return saved_state(workdir)


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_one_device_mesh_and_pmap_give_the_same_binarisation_and_parameters(data_dir):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "parallel_equivalence.py"),
                         data_dir], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "EQUIVALENT adam" in proc.stdout and "EQUIVALENT sgd" in proc.stdout, proc.stdout
  assert "EQUIVALENT binarisation on 1 and 4 devices" in proc.stdout, proc.stdout


_VQ_USAGE = """
import functools, json
import jax, jax.numpy as jnp, numpy as np
from aejax import configs, families, hparams, optimizers, train
from aejax.state import init_state
config = configs.base()
config.model.name, config.model.codebook_size = "vqvae", 64
model = families.create_model(config.model, (28, 28, 1))
tx = optimizers.create_optimizer(config)
state = init_state(jax.random.key(0), (28, 28, 1), model=model, tx=tx)
x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), np.uint8))
rng = jax.random.key(1)
step = functools.partial(train.train_step, hp=hparams.of(config), model=model,
                         tx=optimizers.for_runs(config), config=config)
_, whole = jax.jit(step)(state, x, rng)
n = jax.device_count()
_, per_device = jax.pmap(functools.partial(step, axis_name="data"), axis_name="data",
                         in_axes=(None, 0, None))(state, x.reshape(n, -1, 28, 28, 1), rng)
print(json.dumps({k: [float(whole[k]), float(per_device[k][0])]
                  for k in ("code_perplexity", "codes_used", "loss")}))
"""


@pytest.mark.quick
def test_pmap_reports_the_code_usage_of_the_whole_batch():
  # Usage is not additive: each device's 16 images use fewer codes than the batch's 64, so a mean
  # of per-device values understates it. pmap must report what jit on the whole batch does.
  proc = subprocess.run([sys.executable, "-c", _VQ_USAGE], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env={**os.environ, **_cpu_env(4)})
  assert proc.returncode == 0, proc.stderr[-4000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  for k, (whole, pmap) in got.items():
    assert abs(whole - pmap) <= 1e-4 * abs(whole), (k, whole, pmap)


def test_two_processes_match_one_process_and_resume(data_dir, tmp_path):
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  flags = [*TINY_VAE, f"--data_dir={data_dir}", "--config.num_epochs=1"]
  proc = _launch("--nproc", "2", "--cpu_devices", "2", f"--workdir={multi}", *flags)
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-4000:]
  assert "process 0 of 2, 2 local of 4 devices" in out
  ref = run_aejax(f"--workdir={single}", *flags, env=_cpu_env(4))
  assert ref.returncode == 0, ref.stderr[-4000:]

  (state_multi, meta_multi), (state_single, _) = _final_state(multi), _final_state(single)
  assert meta_multi == {"epoch": 1, "epoch_step": 0, "steps_per_epoch": 10, "metric_sums": {}}
  assert_same_training(state_multi["params"], state_single["params"])
  # Only process 0 wrote: one train and one test line, not one per process.
  assert [(r["epoch"], r["split"]) for r in _rows(multi)] == [(1, "train"), (1, "test")]
  assert sorted(f for f in os.listdir(multi) if f.endswith(".jsonl")) == ["metrics.jsonl"]

  # The same multi-process command with one more epoch resumes from the checkpoint at step 10.
  proc = _launch("--nproc", "2", "--cpu_devices", "2", f"--workdir={multi}", *TINY_VAE,
                 f"--data_dir={data_dir}", "--config.num_epochs=2")
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-4000:]
  assert "Resuming from the checkpoint at step 10" in out
  assert [(r["epoch"], r["split"], r["step"]) for r in _rows(multi)] == [
      (1, "train", 10), (1, "test", 10), (2, "train", 20), (2, "test", 20)]


def test_a_dead_process_does_not_hang_the_other(data_dir, tmp_path):
  # A long run; --grace keeps launch.sh's own watchdog out of it, so JAX itself must notice.
  proc = _launch("--nproc", "2", "--cpu_devices", "1", "--grace", "600",
                 f"--workdir={tmp_path / 'w'}", *TINY_VAE, f"--data_dir={data_dir}",
                 "--config.num_epochs=1000", "--heartbeat_timeout=10", start_new_session=True)
  try:
    children = []
    deadline = time.time() + 600
    while time.time() < deadline:  # Wait until both are training (the first epoch is logged).
      if os.path.exists(tmp_path / "w" / "metrics.jsonl"):
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        break
      time.sleep(1)
    assert len(children) == 2, children
    survivor, victim = int(children[0]), int(children[1])
    os.kill(victim, signal.SIGKILL)
    t0 = time.time()
    while time.time() - t0 < 90:
      try:
        os.kill(survivor, 0)
      except ProcessLookupError:
        break
      time.sleep(0.5)
    waited = time.time() - t0
    out, _ = proc.communicate(timeout=120)
    assert waited < 60, f"the surviving process still ran {waited:.0f}s after its peer died"
    assert proc.returncode != 0
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)


def test_batch_not_divisible_by_device_count_is_a_one_line_error(data_dir, tmp_path):
  proc = run_aejax("--config=experiments/vae.py", f"--workdir={tmp_path / 'w'}",
                   f"--data_dir={data_dir}", "--config.batch_size=100", env=_cpu_env(8))
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("aejax: error:")]
  assert errors == ["aejax: error: config.batch_size=100 is not divisible by the 8 devices; "
                    "use a multiple of 8"]
