"""Train state, the pure train and eval steps, and the epoch loop.

The loop keeps a small dataset (MNIST) on the devices: each epoch draws its permutation on device
from `fold_in(data_key, epoch)` and runs all its steps as one `lax.scan` inside one jit call, so
the host does no per-step work. Randomness of step `s` is `fold_in(train_key, s)`: it depends on
the step number alone, which makes a resumed run bitwise equal to an uninterrupted one.
"""

import functools
import os
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax import checkpoint
from aejax import data
from aejax import losses
from aejax import metrics as metrics_lib
from aejax import models
from aejax import objectives
from aejax import optimizers
from aejax import parallel
from aejax import preprocess
from aejax.errors import UserError

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


# --- Keys --------------------------------------------------------------------------------------

def split_keys(seed: int) -> dict[str, jax.Array]:
  """Named keys, each used for one purpose, so changing one use never shifts another."""
  names = ("init", "data", "train", "eval")
  return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


# --- The pure steps ----------------------------------------------------------------------------

def per_example_metrics(params: Any, x_uint8: jax.Array, rng: jax.Array, *, model: Any,
                        config: ml_collections.ConfigDict,
                        step: jax.Array | None = None) -> Metrics:
  """Scores a batch of uint8 images: a dict of [B] arrays with the objective under 'loss'.

  `step` drives schedules inside the objective (KL warm-up); None means evaluation, which also
  adds the evaluation-only metrics (the test NLL of `config.eval_num_samples`).
  """
  rng_input, rng_model = jax.random.split(rng)
  x = preprocess.binarize(preprocess.to_unit_interval(x_uint8), rng_input,
                          config.input.binarize)
  # Denoising: the model sees a corrupted copy, the objective scores it against the clean x.
  x_in = preprocess.corrupt(x, jax.random.fold_in(rng_input, 1), config.input.corruption,
                            config.input.noise_level)
  return objectives.per_example(model, params, x_in, x, rng_model, config, step)


def train_step(state: TrainState, x_uint8: jax.Array, rng: jax.Array, *, model: Any,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict) -> tuple[TrainState, Metrics]:
  """One optimizer update on a global batch; metrics are batch means before the update."""

  def loss_fn(params):
    per_example = per_example_metrics(params, x_uint8, rng, model=model, config=config,
                                      step=state.step)
    means = {k: jnp.mean(v) for k, v in per_example.items()}
    return means["loss"], means

  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def init_state(key: jax.Array, image_shape: tuple[int, ...], *, model: Any,
               tx: optax.GradientTransformation) -> TrainState:
  x = jnp.zeros((1, *image_shape), jnp.float32)
  params = model.init(key, x, jax.random.key(0))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


# --- Device-resident epochs --------------------------------------------------------------------

def make_train_epoch(step_fn: Callable, *, batch_size: int, steps_per_epoch: int,
                     keys: dict[str, jax.Array], mesh: jax.sharding.Mesh) -> Callable:
  """(state, images_NxHxWxC uint8, epoch) -> (state, epoch-mean metrics), all on device."""
  batch_sharding = parallel.batch_sharded(mesh)

  def train_epoch(state, images_NxHxWxC, epoch):
    perm_N = jax.random.permutation(jax.random.fold_in(keys["data"], epoch),
                                    images_NxHxWxC.shape[0])

    def body(state, i):
      idx_B = jax.lax.dynamic_slice_in_dim(perm_N, i * batch_size, batch_size)
      # The gather reads a replicated dataset; the constraint makes each device compute (and
      # differentiate) only its slice of the global batch, with XLA all-reducing the gradients.
      x_B = jax.lax.with_sharding_constraint(images_NxHxWxC[idx_B], batch_sharding)
      return step_fn(state, x_B, jax.random.fold_in(keys["train"], state.step))

    state, metrics = jax.lax.scan(body, state, jnp.arange(steps_per_epoch))
    return state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(train_epoch, donate_argnums=0)


def make_evaluate(params_metrics_fn: Callable, *, eval_batch_size: int,
                  keys: dict[str, jax.Array], mesh: jax.sharding.Mesh) -> Callable:
  """(params, images_MxHxWxC, mask_M) -> per-image means over the unmasked images.

  The same eval key every time: a stochastic objective (dynamic binarisation, posterior samples)
  is scored on the same draws at every evaluation, so epochs compare like with like.
  """
  batch_sharding = parallel.batch_sharded(mesh)

  def evaluate(params, images_MxHxWxC, mask_M):
    num_batches = images_MxHxWxC.shape[0] // eval_batch_size

    def body(totals, i):
      x_B = jax.lax.dynamic_slice_in_dim(images_MxHxWxC, i * eval_batch_size, eval_batch_size)
      m_B = jax.lax.dynamic_slice_in_dim(mask_M, i * eval_batch_size, eval_batch_size)
      x_B = jax.lax.with_sharding_constraint(x_B, batch_sharding)
      per_example = params_metrics_fn(params, x_B, jax.random.fold_in(keys["eval"], i))
      return {k: totals[k] + jnp.sum(v * m_B) for k, v in per_example.items()}, None

    shapes = jax.eval_shape(params_metrics_fn, params, images_MxHxWxC[:eval_batch_size],
                            keys["eval"])
    zeros = {k: jnp.zeros((), jnp.float32) for k in shapes}
    totals, _ = jax.lax.scan(body, zeros, jnp.arange(num_batches))
    return {k: v / jnp.sum(mask_M) for k, v in totals.items()}

  return jax.jit(evaluate)


def pad_to_multiple(images: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads the leading axis with zeros to a multiple; the mask marks the real rows."""
  pad = -len(images) % multiple
  mask = np.concatenate([np.ones(len(images), np.float32), np.zeros(pad, np.float32)])
  return np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)]), mask


# --- Validation --------------------------------------------------------------------------------

def validate(config: ml_collections.ConfigDict, num_train: int) -> None:
  """Checks what the step functions cannot check for themselves, before any compile."""
  devices = jax.device_count()
  for name in ("batch_size", "eval_batch_size", "num_epochs", "eval_every_epochs"):
    if config[name] < 1:
      raise UserError(f"config.{name}={config[name]} must be >= 1")
  if config.batch_size % devices:
    raise UserError(f"config.batch_size={config.batch_size} is not divisible by the "
                    f"{devices} devices; use a multiple of {devices}")
  if config.eval_batch_size % devices:
    raise UserError(f"config.eval_batch_size={config.eval_batch_size} is not divisible by the "
                    f"{devices} devices; use a multiple of {devices}")
  if config.batch_size > num_train:
    raise UserError(f"config.batch_size={config.batch_size} exceeds the {num_train} training "
                    f"images; use a smaller batch")
  if not config.learning_rate > 0:
    raise UserError(f"config.learning_rate={config.learning_rate} must be > 0")
  if config.model.latents < 1:
    raise UserError(f"config.model.latents={config.model.latents} must be >= 1")
  if config.input.binarize not in preprocess.BINARIZE:
    raise UserError(f"unknown config.input.binarize={config.input.binarize!r}; "
                    f"use one of {preprocess.BINARIZE}")
  allowed = losses.LOSSES.get(config.model.name)
  if allowed is not None and config.loss not in allowed:
    raise UserError(f"config.loss={config.loss!r} does not fit config.model.name="
                    f"{config.model.name!r}; use one of {allowed}")
  objectives.validate(config)


# --- The loop ----------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       data_dir: str | None = None, manual_dir: str | None = None,
                       download: bool = False) -> TrainState:
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  # Input: every process holds the whole (small) dataset; it is put on the devices once.
  if is_chief:
    builder_dir = data.prepare(config.dataset, data_dir, manual_dir, download)
  if jax.process_count() > 1:  # The others wait until process 0 has prepared it.
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("dataset prepared")
    builder_dir = data.prepare(config.dataset, data_dir)
  train_images, _ = data.load_split(builder_dir, "train")
  test_images, _ = data.load_split(builder_dir, "test")
  validate(config, len(train_images))
  image_shape = train_images.shape[1:]
  steps_per_epoch = len(train_images) // config.batch_size  # The remainder waits a permutation.
  logging.info("Data: %d train and %d test images of shape %s; %d steps per epoch",
               len(train_images), len(test_images), image_shape, steps_per_epoch)

  mesh = parallel.make_mesh()
  train_images = parallel.put_replicated(train_images, mesh)
  test_images, test_mask = pad_to_multiple(test_images, config.eval_batch_size)
  test_images = parallel.put_replicated(test_images, mesh)
  test_mask = parallel.put_replicated(test_mask, mesh)

  # Model and optimizer.
  model = models.create_model(config.model, image_shape)
  tx = optimizers.create_optimizer(config, steps_per_epoch)
  keys = split_keys(config.seed)
  state = jax.jit(functools.partial(init_state, image_shape=image_shape, model=model, tx=tx),
                  out_shardings=parallel.replicated(mesh))(keys["init"])
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("Model %s with %s parameters", config.model.name, f"{num_params:,}")

  # Checkpoint: resume from the latest one if the workdir has it.
  mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"), config.checkpoint.max_to_keep)
  writer = metrics_lib.MetricWriter(workdir, enabled=is_chief)
  start_epoch = 0
  if (latest := mngr.latest_step()) is not None:
    state, meta = checkpoint.restore(mngr, latest, state)
    start_epoch = meta["epoch"]
    writer.drop_after(latest)
    logging.info("Resuming from the checkpoint at step %d: epochs 1-%d are done, starting "
                 "epoch %d of %d", latest, start_epoch, start_epoch + 1, config.num_epochs)
  if is_chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  # Update step and evals, compiled ahead of time so compile time is not counted as training.
  metrics_fn = functools.partial(per_example_metrics, model=model, config=config)
  step_fn = functools.partial(train_step, model=model, tx=tx, config=config)
  t0 = time.time()
  train_epoch = make_train_epoch(step_fn, batch_size=config.batch_size,
                                 steps_per_epoch=steps_per_epoch, keys=keys, mesh=mesh)
  train_epoch = train_epoch.lower(state, train_images, 0).compile()
  evaluate = make_evaluate(metrics_fn, eval_batch_size=config.eval_batch_size, keys=keys,
                           mesh=mesh).lower(state.params, test_images, test_mask).compile()
  logging.info("Compiled the train epoch and the evaluation in %.1fs", time.time() - t0)

  epoch_seconds = []
  for epoch in range(start_epoch + 1, config.num_epochs + 1):
    t0 = time.time()
    state, train_metrics = train_epoch(state, train_images, epoch)
    train_metrics = jax.device_get(train_metrics)  # Waits for the epoch to finish.
    epoch_seconds.append(time.time() - t0)
    step = int(state.step)
    examples_per_sec = steps_per_epoch * config.batch_size / epoch_seconds[-1]
    if not np.isfinite(train_metrics["loss"]):
      raise FloatingPointError(f"non-finite training loss at epoch {epoch} (step {step})")
    writer.write(step, epoch, "train", {**train_metrics, "examples_per_sec": examples_per_sec})

    line = (f"epoch {epoch}/{config.num_epochs} step {step} | train loss "
            f"{train_metrics['loss']:.4f}")
    if epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs:
      test_metrics = jax.device_get(evaluate(state.params, test_images, test_mask))
      writer.write(step, epoch, "test", test_metrics)
      line += " | test " + " ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))

    if epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs:
      checkpoint.save(mngr, step, state, {"epoch": epoch, "steps_per_epoch": steps_per_epoch})
    eta = np.mean(epoch_seconds) * (config.num_epochs - epoch)
    logging.info("%s | %s ex/s | ETA %s", line, f"{examples_per_sec:,.0f}",
                 metrics_lib.format_duration(eta))

  if start_epoch >= config.num_epochs:
    logging.info("Nothing to do: the checkpoint already holds %d of %d epochs",
                 start_epoch, config.num_epochs)
  mngr.wait_until_finished()
  mngr.close()
  writer.close()
  return state
