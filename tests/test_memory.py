"""Device memory and the evaluation's chunks (aejax/memory.py): one rule for a device's memory,
chunks chosen from a budget that XLA's own accounting confirms, the same numbers for any chunk,
a 32x32x3 evaluation of 1,000 images x 100 samples under a stated peak memory, and an
out-of-memory error as one line."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import cli
from aejax import configs
from aejax import families
from aejax import group
from aejax import likelihood
from aejax import memory
from aejax import parallel
from aejax.errors import UserError
from conftest import REPO, quick_compile


def test_every_check_reads_the_one_rule_of_device_memory(monkeypatch):
  """catches: group.check_fits asking the devices itself (ignoring $AEJAX_DEVICE_MEMORY_BYTES),
  or the host's memory not shared among the CPU devices."""
  monkeypatch.delenv(memory.DEVICE_MEMORY_ENV, raising=False)
  with open("/proc/meminfo") as f:
    total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
  # Four CPU devices share the host's memory: each gets a quarter.
  env = {k: v for k, v in os.environ.items() if k != memory.DEVICE_MEMORY_ENV}
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  proc = subprocess.run([sys.executable, "-c", "from aejax import memory; "
                         "print(*memory.device_memory_bytes(), sep='|')"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  memory_bytes, source = proc.stdout.strip().split("|")
  share = 1024 * total_kb / 4
  assert source.startswith("host memory") and abs(int(memory_bytes) - share) < 0.05 * share
  # A state of 1,000 float32 (and as many gradients): 8,000 bytes per run.
  like = group.TrainState(step=jax.ShapeDtypeStruct((), jnp.int32),
                          params={"w": jax.ShapeDtypeStruct((1000,), jnp.float32)}, opt_state=())
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), (parallel.DATA_AXIS,))
  layout = group.Layout(mesh=mesh, num_runs=3, vectorized=True)
  monkeypatch.setenv(memory.DEVICE_MEMORY_ENV, "2e4")  # Two runs' 16,004 bytes fit, not three.
  with pytest.raises(UserError, match=r"--max_group_size=2 or less"):
    group.check_fits(like, layout)
  monkeypatch.setenv(memory.DEVICE_MEMORY_ENV, "3e4")
  group.check_fits(like, layout)


def test_chunks_are_balanced_within_the_budget_and_one_that_cannot_fit_names_the_fix():
  # 100 samples, 7 fit: 15 chunks of 7 would leave 5; ceil(100 / 15) = 7 per chunk.
  assert memory.items_per_chunk(10, 75, 100, what="w", fix="f") == 7
  assert memory.items_per_chunk(10, 10**9, 100, what="w", fix="f") == 100
  # 60 fit: two chunks of 50 rather than 60 + 40.
  assert memory.items_per_chunk(10, 600, 100, what="w", fix="f") == 50
  with pytest.raises(UserError, match="needs 0.00 GB per chunk.*lower it"):
    memory.items_per_chunk(11, 10, 100, what="w", fix="lower it")


def _conv_vae(decoder_dist: str, channels: tuple[int, ...] = (4, 8), latents: int = 4):
  config = configs.with_conv(configs.mlp_vae(latents=latents))
  config.model.channels = channels
  config.model.decoder_dist = decoder_dist
  if decoder_dist == "logistic":
    config.model.decoder_components = 5
  model = families.create_model(config.model, (32, 32, 3), "float32")
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jax.random.key(1))["params"]
  return model, params


@pytest.mark.parametrize("decoder_dist, channels, latents", [
    ("gaussian", (4, 8), 4), ("bernoulli", (4, 8), 4),
    ("logistic", (32, 64, 128), 128)])  # experiments/cifar10_conv_vae.py's model.
def test_the_chosen_chunk_fits_the_budget_by_xlas_own_count(decoder_dist, channels, latents):
  """XLA's memory analysis of the compiled estimator (an independent count of its buffers) stays
  under the budget at the chosen chunk. catches: bytes_per_item taken at chunks of 1 and 2 (the
  CIFAR-10 model's peak there is its parameter-sized arrays: 8.7 kB a sample instead of 584 kB,
  a chunk of 100 far over the budget)."""
  model, params = _conv_vae(decoder_dist, channels, latents)
  image, images = jax.ShapeDtypeStruct((32, 32, 3), jnp.float32), 50
  x = jax.ShapeDtypeStruct((images, 32, 32, 3), jnp.float32)
  keys = jax.ShapeDtypeStruct((images,), jax.random.key(0).dtype)
  estimate = lambda p, x, k, c: likelihood.importance_log_weights(model, p, x, x, k, 100, c)
  used = lambda c: jax.jit(estimate, static_argnums=3).lower(
      params, x, keys, c).compile().memory_analysis().temp_size_in_bytes
  budget = used(100) // 4  # A budget that binds: the chunk of 100 takes four times as much.
  chunk = likelihood.sample_chunk(model, params, image, images, 100, 100, budget, "test")
  assert 1 <= chunk < 100
  assert used(chunk) <= budget, (chunk, used(chunk), budget)


def test_the_nll_is_the_same_for_a_budgets_chunk_and_one_chunk():
  """catches: a chunk that changes which samples an image gets (j_C not offset by the chunk)."""
  model, params = _conv_vae("gaussian")
  x = jax.random.uniform(jax.random.key(2), (6, 32, 32, 3))
  keys_B = jax.random.split(jax.random.key(3), 6)
  # A budget of a few samples of the 6 images per chunk (~50 kB a sample of an image).
  chunk = likelihood.sample_chunk(model, params, jax.ShapeDtypeStruct((32, 32, 3), jnp.float32),
                                  6, 30, 30, int(2e6), "test")
  assert 1 < chunk < 30, chunk  # Several chunks.
  small = likelihood.vae_scores(model, params, x, keys_B, k=30, chunk=chunk)
  whole = likelihood.vae_scores(model, params, x, keys_B, k=30, chunk=30)
  np.testing.assert_allclose(small["nll"], whole["nll"], rtol=1e-6)
  np.testing.assert_allclose(small["elbo"], whole["elbo"], rtol=1e-6)


def test_an_out_of_memory_error_is_one_line_naming_the_budget():
  """catches: XLA's RESOURCE_EXHAUSTED left to a traceback (exit 1)."""
  # run_command ends its process (os._exit): a process of its own, as a command runs.
  script = ("import jax\nfrom aejax import cli\ndef command():\n"
            "  raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating "
            "30822912384 bytes.')\ncli.run_command(command)\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  stderr = proc.stderr
  assert proc.returncode == 2, stderr
  assert stderr.startswith("aejax: error: a device ran out of memory (RESOURCE_EXHAUSTED")
  assert len(stderr.strip().splitlines()) == 1 and "--config.eval_memory_bytes" in stderr
  other = jax.errors.JaxRuntimeError("INTERNAL: something else")
  assert cli.out_of_memory(other, "fix") is None
  line = cli.out_of_memory(jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory allocating 30822912384 bytes."), cli.TRAIN_MEMORY_FIX)
  assert "30822912384" in line and "--config.eval_memory_bytes" in line


# --- 32x32x3, 1,000 test images, 100 samples each, under a stated peak ---------------------------

NUM_TEST, NUM_TRAIN = 1000, 64
# Peak resident memory of the whole run (Python, JAX, data, model, evaluation), measured on the
# CPU with a budget of 2e8 bytes: 0.84 GB with this file alone, 2.01 GB and 3.18 GB in two runs of
# the whole suite under `-n 2` (the process's peak varies with what else runs: the evaluation's
# chunks are the same, as the log line asserted below shows). With the chunk of 100 samples that
# ignored the budget (100 x 1,000 images decoded at once; Gaussian decoder, (4, 8) convs):
# 5.55 GB alone, which both the bound and the chunk line catch.
PEAK_BOUND = 4.5e9


@pytest.fixture(scope="module")
def rgb32(tmp_path_factory):
  """A data dir with `rgb32`: 32x32x3 random PNGs, 64 train and 1,000 test images."""
  from PIL import Image

  root = tmp_path_factory.mktemp("rgb32")
  rng = np.random.default_rng(0)
  for split, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
    for i in range(n):
      folder = root / "images" / split / str(i % 2)
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
  data_dir = str(root / "tfds")
  proc = subprocess.run([sys.executable, "-m", "aejax.prepare_folder",
                         f"--folder={root / 'images'}", "--name=rgb32", "--channels=3",
                         f"--data_dir={data_dir}"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return data_dir


def test_a_32x32x3_evaluation_of_1000_images_and_100_samples_stays_under_its_peak(rgb32,
                                                                                   tmp_path):
  """catches: eval_sample_chunk used as given (100), whatever the budget: a peak of 5.55 GB."""
  workdir = str(tmp_path / "run")
  script = (
      "import resource, runpy, sys\n"
      "sys.argv = ['aejax.main'] + sys.argv[1:]\n"
      "try:\n"
      "  runpy.run_module('aejax.main', run_name='__main__')\n"
      "finally:\n"
      "  print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
      "        file=sys.stderr)\n")
  proc = subprocess.run(
      [sys.executable, "-c", script, "--config=experiments/cifar10_conv_vae.py",
       f"--workdir={workdir}", f"--data_dir={rgb32}", "--nodownload",
       "--config.dataset=rgb32", "--config.model.channels=(4, 8)", "--config.model.latents=4",
       "--config.model.decoder_dist=gaussian", "--config.model.decoder_components=1",
       "--config.num_epochs=1", "--config.batch_size=32", "--config.eval_num_samples=100",
       "--config.eval_memory_bytes=2e8"],
      cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ,
                                                                 **quick_compile()})
  assert proc.returncode == 0, proc.stderr[-3000:]
  peak = 1024 * int(proc.stderr.split("PEAK_RSS_KB")[-1].split()[0])
  final = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))][-1]
  print(f"peak RSS {peak / 1e9:.2f} GB; test NLL {final['nll']:.4f}")
  assert final["split"] == "test" and np.isfinite(final["nll"]), final
  assert peak < PEAK_BOUND, f"peak RSS {peak / 1e9:.2f} GB"
  assert "in chunks of 4 for the 1000 images" in proc.stderr  # 2e8 // (49,664 x 1,000) = 4.
