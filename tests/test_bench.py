"""`python -m aejax.bench --json`: one JSON line per (mode, batch size), on real MNIST."""

import json

from conftest import run_aejax


def test_bench_prints_one_json_line_per_mode_and_batch_size(data_dir):
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=vae", "--num_train=512",
                   "--batch_sizes=32,64", "--steps=2", "--input_workers=0", module="aejax.bench")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines()]  # Every line is JSON.
  assert [(r["mode"], r["batch_size"]) for r in rows] == [
      (mode, b) for b in (32, 64) for mode in ("baseline", "device", "stream")]
  for r in rows:
    # 512 images: 16 steps of 32 or 8 of 64 per epoch, each timed mode runs one whole epoch.
    assert r["timed_steps"] * r["batch_size"] == 512, r
    assert r["examples_per_sec"] > 0 and r["seconds"] > 0 and r["compile_s"] > 0, r
    assert r["flops_source"] in ("xla_cost_analysis", "analytic_dense_6x"), r
    # The VAE's dense layers alone need 6 * 814,000 FLOPs per image for a step.
    assert r["flops_per_step"] > 6 * 814_000 * r["batch_size"] * 0.5, r
    assert abs(r["flops_per_sec"] - r["flops_per_step"] * r["timed_steps"] / r["seconds"]) \
        < 1e-6 * r["flops_per_sec"]
    assert r["dtype"] == "float32" and r["num_train"] == 512
  for b in (32, 64):
    base, *others = [r for r in rows if r["batch_size"] == b]
    assert base["ratio_to_baseline"] == 1.0
    for r in others:
      assert abs(r["ratio_to_baseline"] - r["examples_per_sec"] / base["examples_per_sec"]) < 1e-9


def test_bench_runs_a_conv_experiment_with_the_loop_for_the_backend(data_dir):
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=conv_ae", "--num_train=256",
                   "--batch_sizes=128", "--steps=2", "--modes=baseline,device",
                   "--conv_impl=strided", module="aejax.bench")
  assert proc.returncode == 0, proc.stderr[-2000:]
  base, device = [json.loads(line) for line in proc.stdout.splitlines()]
  assert (base["mode"], device["mode"]) == ("baseline", "device")
  assert device["loop"] == "host" and device["timed_steps"] == 2  # CPU + conv: a host loop.
  assert base["conv_impl"] == device["conv_impl"] == "strided"  # The flag overrides the default.
  proc = run_aejax(f"--data_dir={data_dir}", "--experiment=conv_ae", "--loop=scna",
                   module="aejax.bench")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("aejax: error: --loop=scna is unknown")


def test_bench_rejects_an_unknown_experiment(data_dir):
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=nope", module="aejax.bench")
  assert proc.returncode == 2
  assert "experiments/nope.py" in proc.stderr.strip().splitlines()[-1]


def test_bench_replicas_time_vectorised_groups_beside_one_run(data_dir):
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=vae", "--num_train=512",
                   "--batch_sizes=64", "--steps=2", "--modes=device", "--replicas=1,4",
                   module="aejax.bench")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [(r["mode"], r.get("replicas")) for r in rows] == [
      ("device", None), ("group", 1), ("group", 4)]
  device, *groups = rows
  for r in groups:
    # One epoch of 8 steps of 64 for each of the G runs: the aggregate examples.
    assert r["timed_steps"] * r["batch_size"] == 512 * r["replicas"], r
    assert abs(r["examples_per_sec"] - 512 * r["replicas"] / r["seconds"]) < 1e-6 * r[
        "examples_per_sec"]
    assert abs(r["ratio_to_one_run"] - r["examples_per_sec"] / device["examples_per_sec"]) < 1e-9


def test_bench_times_the_hand_written_peer_beside_the_device_loop_alternating(data_dir):
  """--modes=device,peer --rounds=2: each round's rows in order, each ratio_to_peer the device's
  examples/s over the same round's peer's; a config the peer does not reproduce is one line."""
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=vae", "--num_train=512",
                   "--batch_sizes=64", "--steps=2", "--modes=device,peer", "--rounds=2",
                   module="aejax.bench")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [(r["mode"], r["round"]) for r in rows] == [
      ("device", 0), ("peer", 0), ("device", 1), ("peer", 1)]
  for device, peer in (rows[:2], rows[2:]):
    assert peer["ratio_to_peer"] == 1.0 and peer["loop"] == "scan"
    assert abs(device["ratio_to_peer"] - device["examples_per_sec"] / peer["examples_per_sec"]
               ) < 1e-9
    assert device["timed_steps"] == peer["timed_steps"] == 8  # One epoch of 512 images.
  # A conv VAE on CPU: the peer runs its steps from a host loop, as aejax's device mode does.
  proc = run_aejax("--json", f"--data_dir={data_dir}", "--experiment=conv_vae",
                   "--num_train=256", "--batch_sizes=128", "--steps=2", "--modes=device,peer",
                   module="aejax.bench")
  assert proc.returncode == 0, proc.stderr[-2000:]
  device, peer = [json.loads(line) for line in proc.stdout.splitlines()]
  assert device["loop"] == peer["loop"] == "host" and peer["timed_steps"] == 2
  proc = run_aejax(f"--data_dir={data_dir}", "--experiment=conv_ae", "--modes=peer",
                   module="aejax.bench")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "aejax: error: --modes=peer times a VAE on the ELBO")


def test_the_peers_objective_is_aejaxs_elbo(mnist):
  """The hand-written loss and aejax's train objective, each averaged over 32 draws, on a VAE
  trained 40 steps (a KL of several nats), agree to 0.2% (catches: the peer's KL left out, its
  pixels averaged instead of summed, its binarisation a threshold)."""
  import functools
  import jax
  import jax.numpy as jnp
  import numpy as np
  from aejax import configs, families, hparams, minimal_loop, optimizers, sampling, train
  from aejax.state import init_state

  config = configs.mlp_vae()
  model = families.create_model(config.model, (28, 28, 1))
  hp = hparams.of(config)
  state = init_state(jax.random.key(0), (28, 28, 1), model=model,
                     tx=optimizers.create_optimizer(config))
  step = jax.jit(functools.partial(train.train_step, hp=hp, model=model,
                                   tx=optimizers.for_runs(config), config=config))
  images = jnp.asarray(mnist[0][:40 * 128])
  for i in range(40):
    state, _ = step(state, images[i * 128:(i + 1) * 128], jax.random.key(i))
  x = jnp.asarray(mnist[2][:500])
  keys = jax.random.split(jax.random.key(1), 32)
  ours = jax.jit(jax.vmap(lambda k: jnp.mean(train.per_example_metrics(
      state.params, x, sampling.Stream(k), hp=hp, model=model, config=config, training=True,
      step=jnp.int32(0))["loss"])))(keys)
  peer = jax.jit(jax.vmap(lambda k: minimal_loop.loss(model, state.params, x, k)))(keys)
  kl = jnp.mean(train.per_example_metrics(state.params, x, sampling.Stream(keys[0]), hp=hp,
                                          model=model, config=config, training=True,
                                          step=jnp.int32(0))["kl"])
  assert kl > 3.0, kl
  np.testing.assert_allclose(float(jnp.mean(peer)), float(jnp.mean(ours)), rtol=2e-3)
