"""The pure steps and the device-resident epoch, on real MNIST batches."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from aejax import configs
from aejax import epochs
from aejax import group
from aejax import hparams
from aejax import families
from aejax import optimizers
from aejax import parallel
from aejax import sampling
from aejax import train
from aejax.data.dataset import pad_to_multiple
from aejax.state import init_state


def _setup(model_name: str):
  config = configs.base()
  if model_name == "vae":
    config.model.name, config.loss, config.input.binarize = "vae", "elbo", "dynamic"
    config.model.hidden, config.model.latents = (500,), 20
  model = families.create_model(config.model, (28, 28, 1))
  hp, tx = hparams.of(config), optimizers.for_runs(config)
  state = init_state(jax.random.key(0), (28, 28, 1), model=model, tx=tx(hp))
  metrics_fn = functools.partial(train.per_example_metrics, hp=hp, model=model, config=config,
                                 training=False)
  step_fn = functools.partial(train.train_step, hp=hp, model=model, tx=tx, config=config)
  return config, state, metrics_fn, step_fn


def test_one_train_step_lowers_the_loss_on_a_real_batch(mnist):
  x = jnp.asarray(mnist[0][:128])
  for name in ("ae", "vae"):
    _, state, metrics_fn, step_fn = _setup(name)
    rng = jax.random.key(42)
    stream = sampling.Stream(rng)  # What train_step draws from: its step key.
    before = jnp.mean(metrics_fn(state.params, x, stream)["loss"])
    new_state, metrics = jax.jit(step_fn)(state, x, rng)
    # The step reports the loss before its update, on the same draws.
    chex.assert_trees_all_close(metrics["loss"], before, rtol=1e-5)
    after = jnp.mean(metrics_fn(new_state.params, x, stream)["loss"])
    assert after < before, (name, float(before), float(after))
    assert int(new_state.step) == 1


def test_scanned_call_equals_a_python_loop_of_steps(mnist):
  images = jnp.asarray(mnist[0][:640])
  config, state, _, step_fn = _setup("vae")
  run = group.run_inputs(config, 0)
  keys = run["keys"]
  mesh = parallel.make_mesh()
  chunk_fn = epochs.make_train_chunk(step_fn, batch_size=64, mesh=mesh)
  # Reference: the same permutation and per-step keys, one jitted step at a time.
  perm = jax.random.permutation(jax.random.fold_in(keys["data"], 3), 640)
  ref = state
  losses = []
  jit_step = jax.jit(step_fn)
  for i in range(10):
    ref, m = jit_step(ref, images[perm[i * 64:(i + 1) * 64]],
                      jax.random.fold_in(keys["train"], ref.step))
    losses.append(m["loss"])
  scanned, sums = chunk_fn(state, images, 3, 0, 10, run)
  chex.assert_trees_all_close(scanned.params, ref.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(sums["loss"], jnp.sum(jnp.stack(losses)), rtol=1e-5)
  assert int(scanned.step) == 10 and int(sums["first_nonfinite"]) == -1


def test_evaluation_ignores_padding(mnist):
  test_images = mnist[2][:1000]
  config, state, metrics_fn, _ = _setup("ae")
  run = group.run_inputs(config, 0)
  keys = run["keys"]
  padded, mask = pad_to_multiple(test_images, 300)
  assert padded.shape[0] == 1200 and mask.sum() == 1000
  evaluate = epochs.make_evaluate(metrics_fn, eval_batch_size=300, mesh=parallel.make_mesh(),
                                  config=config)
  got = evaluate(state.params, jnp.asarray(padded), jnp.asarray(mask), run)
  # The AE's metrics do not depend on the key, so one pass over the real images is the truth.
  want = metrics_fn(state.params, jnp.asarray(test_images),
                    sampling.example_keys(keys["eval"], 0, 1000))
  for k in ("sq_err", "bce", "loss"):
    np.testing.assert_allclose(got[k], np.mean(want[k]), rtol=1e-5)


def test_evaluation_batch_statistics_do_not_depend_on_eval_batch_size(mnist):
  # Batch statistics of the whole test split, not means of per-batch (padded) values: a VQ-VAE's
  # code usage and a sparse AE's KL, against one unpadded pass over the 1000 images.
  test_images = mnist[2][:1000]
  vq, sparse = configs.base(), configs.base()
  vq.model.name, vq.model.codebook_size = "vqvae", 64
  sparse.model.hidden, sparse.model.latents = (64,), 16
  sparse.model.code_activation = "sigmoid"
  sparse.objective.sparsity_weight, sparse.objective.sparsity_target = 2.0, 0.05
  for config, names in ((vq, ("code_perplexity", "codes_used")),
                        (sparse, ("kl_sparsity", "loss"))):
    run = group.run_inputs(config, 0)
    keys = run["keys"]
    model = families.create_model(config.model, (28, 28, 1))
    tx = optimizers.create_optimizer(config)
    params = init_state(jax.random.key(0), (28, 28, 1), model=model, tx=tx).params
    metrics_fn = functools.partial(train.per_example_metrics, hp=run["hp"], model=model,
                                   config=config, training=False)
    got = {}
    for b in (300, 1000):
      padded, mask = pad_to_multiple(test_images, b)
      evaluate = epochs.make_evaluate(metrics_fn, eval_batch_size=b, mesh=parallel.make_mesh(),
                                      config=config)
      got[b] = evaluate(params, jnp.asarray(padded), jnp.asarray(mask), run)
    for k in names:
      np.testing.assert_allclose(got[300][k], got[1000][k], rtol=1e-5, err_msg=k)
    if config is vq:  # The perplexity of the split's code frequencies, by hand.
      counts = np.sum(metrics_fn(params, jnp.asarray(test_images),
                                 sampling.example_keys(keys["eval"], 0, 1000))["code_counts"], 0)
      p = counts[counts > 0] / counts.sum()
      np.testing.assert_allclose(got[300]["code_perplexity"], np.exp(-np.sum(p * np.log(p))),
                                 rtol=1e-5)
