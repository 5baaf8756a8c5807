"""Train state, the pure train and eval steps, and the loop.

The loop keeps a small dataset (MNIST) on the devices: each epoch draws its permutation on device
from `fold_in(data_key, epoch)` and runs its steps as `lax.scan`s inside jit calls of
`steps_per_call` steps (default: the whole epoch), so the host does no per-step work (conv models
on CPU run a host loop over one jitted step instead: aejax/loops.py says why). Randomness
of step `s` is `fold_in(train_key, s)` and the data position is (epoch, step in epoch): both are
in every checkpoint, which makes a resumed run bitwise equal to an uninterrupted one.
"""

import functools
import os
import time
import types
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax.run import checkpoint
from aejax.run import lock
from aejax.data import dataset
from aejax.data import input_pipeline
from aejax import hparams
from aejax.run import metrics as metrics_lib
from aejax import loops
from aejax import models
from aejax import objectives
from aejax import optimizers
from aejax import parallel
from aejax.run import preemption
from aejax import preprocess
from aejax import sampling
from aejax import validation
from aejax.run import rundir
from aejax.errors import Diverged, Preempted, UserError
# The state and the test split's padding live apart from the loop (analysis uses them too).
from aejax.data.dataset import pad_to_multiple
from aejax.state import TrainState, init_state

Metrics = dict[str, jax.Array]


# --- Keys --------------------------------------------------------------------------------------

def split_keys(seed: int) -> dict[str, jax.Array]:
  """Named keys, each used for one purpose, so changing one use never shifts another."""
  names = ("init", "data", "train", "eval")
  return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


# --- The pure steps ----------------------------------------------------------------------------

def per_example_metrics(params: Any, x_uint8: jax.Array, keys_B: jax.Array, *, model: Any,
                        config: ml_collections.ConfigDict, step: jax.Array | None = None,
                        hp: hparams.Hparams | None = None,
                        axis_name: str | None = None) -> Metrics:
  """Scores a batch of uint8 images: a dict of [B] arrays with the objective under 'loss'.

  `keys_B` holds one key per example (or is one key: sampling.as_example_keys), so every
  example's randomness (binarisation, corruption, posterior samples) is the same however the
  batch is split across devices. `step` drives schedules inside the objective (KL warm-up); None
  means evaluation, which also adds the evaluation-only metrics (the test NLL of
  `config.eval_num_samples`). `hp`: the per-run hyperparameters (default: the config's).
  """
  hp = hparams.of(config) if hp is None else hp
  keys_B = sampling.as_example_keys(keys_B, x_uint8.shape[0])
  keys_input_B, keys_corrupt_B, keys_model_B = sampling.split(keys_B, 3)
  x = preprocess.binarize(preprocess.to_unit_interval(x_uint8), keys_input_B,
                          config.input.binarize)
  # Denoising: the model sees a corrupted copy, the objective scores it against the clean x.
  x_in = preprocess.corrupt(x, keys_corrupt_B, config.input.corruption, hp["input.noise_level"])
  return objectives.per_example(model, params, x_in, x, keys_model_B, config, step, hp, axis_name)


def train_step(state: TrainState, x_uint8: jax.Array, rng: jax.Array,
               hp: hparams.Hparams | None = None, *, model: Any,
               tx: optax.GradientTransformation | Callable[[hparams.Hparams], Any],
               config: ml_collections.ConfigDict,
               axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One optimizer update on a global batch; metrics are batch means before the update.

  `hp` holds the run's hyperparameters as arrays (default: the config's, as constants); `tx` is
  the optimizer or, to take its learning rate and weight decay from `hp`, a function of `hp`.

  Under `jit` over a mesh, `x_uint8` is the global batch (sharded) and `axis_name` is None: XLA
  inserts the gradient all-reduce. Under `pmap`, `x_uint8` is this device's slice and the
  gradients and metrics are averaged over `axis_name` explicitly. The same function serves both.
  """
  local_batch = x_uint8.shape[0]
  first = jax.lax.axis_index(axis_name) * local_batch if axis_name else 0
  keys_B = sampling.example_keys(rng, first, local_batch)

  def loss_fn(params):
    per_example = per_example_metrics(params, x_uint8, keys_B, model=model, config=config,
                                      step=state.step, hp=hp, axis_name=axis_name)
    means = {k: jnp.mean(v) for k, v in per_example.items()}
    return means["loss"], means

  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  if axis_name:  # Equal local batches, so the mean of local means is the global mean.
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  if not isinstance(tx, optax.GradientTransformation):
    tx = tx(hparams.of(config) if hp is None else hp)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


# --- Device-resident epochs --------------------------------------------------------------------

def make_train_chunk(step_fn: Callable, *, batch_size: int,
                     keys: dict[str, jax.Array] | None = None, mesh: jax.sharding.Mesh,
                     mode: str = "mesh", loop: str = "scan", vectorized: bool = False,
                     run_sharded: bool = False) -> Any:
  """(state, images_NxHxWxC uint8, epoch, start, num_steps[, run]) -> (state, metrics), on device.

  Runs steps start, ..., start + num_steps - 1 of `epoch` (num_steps is static) and returns
  per-metric sums over them plus the index of the first step whose loss was not finite (-1 if
  none). mode 'mesh': jit over the mesh; `step_fn` sees the global batch, sharded on 'data'.
  mode 'pmap': state and images carry a leading device axis, each device gathers its slice of
  every global batch and `step_fn` must average over parallel.DATA_AXIS. `loop` (a resolved
  loops.LOOPS choice) says how the steps execute; each has the jitted function's `.lower(...)
  .compile()` interface and gives the same batches, keys and sums.

  Without `keys` the call takes the run as its last argument, `run` = {"keys": split_keys(seed),
  "hp": hparams.of(config)}, and passes run["hp"] on to `step_fn`. `vectorized`: state, run and
  the results carry a leading run axis and the steps are vmapped over it (one program for a
  group of runs); `run_sharded` splits that axis over the mesh, each run's batch then whole on
  its device (no all-reduce), instead of splitting every run's batch.
  """
  local_batch = batch_size // mesh.size
  batch_sharding = parallel.batch_sharded(mesh)

  def permutation(images_NxHxWxC, epoch, run):
    run_keys = keys if run is None else run["keys"]
    return jax.random.permutation(jax.random.fold_in(run_keys["data"], epoch),
                                  images_NxHxWxC.shape[0])

  def body(state, perm_N, images_NxHxWxC, i, run):
    run_keys = keys if run is None else run["keys"]
    hp = {} if run is None else {"hp": run["hp"]}
    idx_B = jax.lax.dynamic_slice_in_dim(perm_N, i * batch_size, batch_size)
    if mode == "pmap":
      idx_b = jax.lax.dynamic_slice_in_dim(
          idx_B, jax.lax.axis_index(parallel.DATA_AXIS) * local_batch, local_batch)
      x_b = images_NxHxWxC[idx_b]
    elif run_sharded:  # vmap's spmd_axis_name puts the run axis on 'data'.
      x_b = images_NxHxWxC[idx_B]
    else:
      # The gather reads a replicated dataset; the constraint makes each device compute (and
      # differentiate) only its slice of the global batch.
      x_b = jax.lax.with_sharding_constraint(images_NxHxWxC[idx_B], batch_sharding)
    return step_fn(state, x_b, jax.random.fold_in(run_keys["train"], state.step), **hp)

  def summarize(metrics):  # metrics: [num_steps] per name.
    bad = ~jnp.isfinite(metrics["loss"])
    sums = jax.tree.map(jnp.sum, metrics)
    sums["first_nonfinite"] = jnp.where(jnp.any(bad), jnp.argmax(bad), -1)
    return sums

  def one_run(state, images_NxHxWxC, epoch, start, num_steps, run):
    perm_N = permutation(images_NxHxWxC, epoch, run)
    state, metrics = jax.lax.scan(lambda s, i: body(s, perm_N, images_NxHxWxC, i, run), state,
                                  start + jnp.arange(num_steps), unroll=loop == "unroll")
    return state, summarize(metrics)

  # The run axis: vmapped over state, permutation and run; images and step index are shared.
  over_runs = (lambda f, in_axes: jax.vmap(
      f, in_axes=in_axes, spmd_axis_name=parallel.DATA_AXIS if run_sharded else None)
      ) if vectorized else (lambda f, in_axes: f)

  def train_chunk(state, images_NxHxWxC, epoch, start, num_steps, run=None):
    return over_runs(lambda s, r: one_run(s, images_NxHxWxC, epoch, start, num_steps, r),
                     (0, 0))(state, run)

  if loop == "host":
    permutation_r = over_runs(permutation, (None, None, 0))
    body_r = over_runs(body, (0, 0, None, None, 0))
    stack = lambda ms: over_runs(summarize, 0)(jax.tree.map(lambda *m: jnp.stack(m, -1), *ms))
    if mode == "pmap":
      wrap = functools.partial(jax.pmap, axis_name=parallel.DATA_AXIS)
      return _HostLoop(wrap(permutation_r, in_axes=(0, None, None)),
                       wrap(body_r, in_axes=(0, 0, 0, None, None), donate_argnums=0), wrap(stack))
    return _HostLoop(jax.jit(permutation_r), jax.jit(body_r, donate_argnums=0), jax.jit(stack))
  if mode == "pmap":
    # pmap indexes in_axes by position, the static num_steps (argument 4) included.
    in_axes = (0, 0, None, None) + ((None, None) if keys is None else ())
    return jax.pmap(train_chunk, axis_name=parallel.DATA_AXIS, in_axes=in_axes,
                    static_broadcasted_argnums=4, donate_argnums=0)
  return jax.jit(train_chunk, static_argnums=4, donate_argnums=0)


class _HostLoop:
  """A chunk as a Python loop over one compiled step, behind a jitted chunk's interface.

  `lower(state, images, epoch, start, num_steps[, run]).compile()` compiles the permutation and
  the step ahead (their shapes do not depend on num_steps) and returns
  `(state, images, epoch, start[, run]) -> (state, sums)`. Steps are dispatched without waiting,
  so the host runs ahead of the device; the per-step metrics are stacked and summed on device.
  """

  def __init__(self, permutation: Callable, step: Callable, stack: Callable):
    self._permutation, self._step, self._stack = permutation, step, stack
    self._compiled = None  # (permutation, step): one compile serves every num_steps.

  def lower(self, state, images, epoch, start, num_steps, run=None):
    if self._compiled is None:
      permutation = self._permutation.lower(images, epoch, run).compile()
      self._compiled = (permutation, self._step.lower(state, permutation(images, epoch, run),
                                                      images, start, run).compile())
    permutation, step = self._compiled
    call = lambda state, images, epoch, start, run=None: self._run(
        permutation, step, state, images, epoch, start, num_steps, run)
    return types.SimpleNamespace(compile=lambda: call)

  def __call__(self, state, images, epoch, start, num_steps, run=None):
    """Uncompiled: as a pmap across processes is called (it takes each process's arrays)."""
    return self._run(self._permutation, self._step, state, images, epoch, start, num_steps, run)

  def _run(self, permutation, step, state, images, epoch, start, num_steps, run):
    perm_N = permutation(images, epoch, run)
    metrics = []
    for i in range(start, start + num_steps):
      state, m = step(state, perm_N, images, i, run)
      metrics.append(m)
    return state, self._stack(metrics)


def make_evaluate(params_metrics_fn: Callable, *, eval_batch_size: int,
                  keys: dict[str, jax.Array] | None = None, mesh: jax.sharding.Mesh,
                  config: ml_collections.ConfigDict | None = None,
                  vectorized: bool = False) -> Callable:
  """(params, images_MxHxWxC, mask_M[, run]) -> per-image means over the unmasked images, and
  the batch statistics of all of them (objectives.from_sums; `config` names their parameters).

  The same eval key every time: a stochastic objective (dynamic binarisation, posterior samples)
  is scored on the same draws at every evaluation, so epochs compare like with like. Without
  `keys` the call takes `run` (as make_train_chunk); `vectorized`: params and run carry a
  leading run axis, and so do the results.
  """
  batch_sharding = parallel.batch_sharded(mesh)

  def evaluate(params, images_MxHxWxC, mask_M, run=None):
    eval_key = keys["eval"] if run is None else run["keys"]["eval"]
    hp = {} if run is None else {"hp": run["hp"]}
    num_batches = images_MxHxWxC.shape[0] // eval_batch_size

    def body(totals, i):
      x_B = jax.lax.dynamic_slice_in_dim(images_MxHxWxC, i * eval_batch_size, eval_batch_size)
      m_B = jax.lax.dynamic_slice_in_dim(mask_M, i * eval_batch_size, eval_batch_size)
      x_B = jax.lax.with_sharding_constraint(x_B, batch_sharding)
      keys_B = sampling.example_keys(eval_key, i * eval_batch_size, eval_batch_size)
      per_example = params_metrics_fn(params, x_B, keys_B, **hp)
      # Masked sums over the batch axis; a POOLED [B, ...] array keeps its trailing axes.
      return {k: totals[k] + jnp.tensordot(m_B, v, axes=1) for k, v in per_example.items()}, None

    # Which metrics exist depends on the config, not on the values in `hp`.
    shapes = jax.eval_shape(params_metrics_fn, params, images_MxHxWxC[:eval_batch_size],
                            sampling.example_keys(eval_key, 0, eval_batch_size))
    zeros = {k: jnp.zeros(v.shape[1:], jnp.float32) for k, v in shapes.items()}
    totals, _ = jax.lax.scan(body, zeros, jnp.arange(num_batches))
    return objectives.from_sums(totals, jnp.sum(mask_M), config,
                                None if run is None else run["hp"])

  if vectorized:
    return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0)))
  return jax.jit(evaluate)


# --- The loop ----------------------------------------------------------------------------------


def _prepare_data(config: ml_collections.ConfigDict, data_dir: str | None,
                  manual_dir: str | None, download: bool) -> str:
  """The prepared dataset's directory; only process 0 prepares it, the others wait."""
  if jax.process_index() == 0:
    builder_dir = dataset.prepare(config.dataset, data_dir, manual_dir, download)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("dataset prepared")
    builder_dir = dataset.prepare(config.dataset, data_dir)
  return builder_dir


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       data_dir: str | None = None, manual_dir: str | None = None,
                       download: bool = False, allow_fallback: bool = False) -> TrainState:
  """Trains (or resumes) the run in `workdir`; returns the final train state."""
  return train_group([config], [workdir], vectorized=False, data_dir=data_dir,
                     manual_dir=manual_dir, download=download, allow_fallback=allow_fallback)


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list[str], *,
                vectorized: bool = True, data_dir: str | None = None,
                manual_dir: str | None = None, download: bool = False,
                allow_fallback: bool = False) -> TrainState:
  """Trains (or resumes) runs that differ only in seed and hparams.FIELDS as one program.

  The state gets a leading run axis and every step is vmapped over it; each run keeps its own
  run directory (config, metrics, checkpoints of its slice), exactly as if trained alone.
  `vectorized=False` trains one run without the run axis. Returns the final (stacked) state.
  """
  # Signals are caught from the start, so a SIGTERM during start-up stops at the first call.
  with preemption.PreemptionWatcher() as watcher:
    return _train_group(configs, workdirs, watcher, vectorized=vectorized, data_dir=data_dir,
                        manual_dir=manual_dir, download=download, allow_fallback=allow_fallback)


def check_group(configs: list[ml_collections.ConfigDict], vectorized: bool) -> None:
  """A group shares one program: its runs may differ only in seed and hparams.FIELDS."""
  if not vectorized and len(configs) != 1:
    raise ValueError("several runs train only as a vectorised group")
  keys = [hparams.group_key(c) for c in configs]
  if len(set(keys)) > 1:
    raise UserError(f"the runs of a vectorised group may differ only in seed and "
                    f"{', '.join(hparams.FIELDS)} (and must switch the same terms on); split "
                    f"them into groups with aejax.sweep --vectorize")
  for c in configs:
    if c.parallel != "mesh" or c.input_mode != "device":
      raise UserError("a vectorised group trains on the mesh with the data on the devices; use "
                      "config.parallel='mesh' and config.input_mode='device'")


def device_memory_bytes() -> int:
  """Memory of one device: the allocator's limit on accelerators, RAM shared by the CPU devices."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()


def check_fits(state_shapes: Any, num_runs: int, runs_per_device_divisor: int) -> None:
  """A UserError when the group's train states (and their gradients, which exist at the same
  time) cannot fit on a device; it names the largest group size that would."""
  per_run = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state_shapes))
  per_run += sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state_shapes.params))
  limit = device_memory_bytes()
  need = per_run * -(-num_runs // runs_per_device_divisor)
  if need > limit:
    fit = limit // per_run * runs_per_device_divisor
    fix = (f"pass --max_group_size={fit} or less" if fit else
           "one run alone does not fit: use a smaller model")
    raise UserError(f"a vectorised group of {num_runs} runs needs {need / 2**30:.1f} GiB per "
                    f"device for its train states and gradients, more than the "
                    f"{limit / 2**30:.1f} GiB of device memory; {fix}")


def _train_group(configs: list[ml_collections.ConfigDict], workdirs: list[str],
                 watcher: preemption.PreemptionWatcher, *, vectorized: bool,
                 data_dir: str | None, manual_dir: str | None, download: bool,
                 allow_fallback: bool) -> TrainState:
  is_chief = jax.process_index() == 0
  config = configs[0]  # Everything but seed and hparams.FIELDS is the same in every run.
  for c, workdir in zip(configs, workdirs, strict=True):
    validation.validate_config(c, jax.device_count())
    if not workdir:
      raise UserError("--workdir is empty; pass a directory (new, or a run to resume)")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise UserError(f"--workdir={workdir} is a file; pass a directory (new or a run to resume)")
  if vectorized:
    check_group(configs, vectorized)
  for c, workdir in zip(configs, workdirs):
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:  # /proc/x, /dev/null/x, a read-only or full file system, no permission.
      raise UserError(f"--workdir={workdir} cannot be created ({e.strerror}); pass a directory "
                      f"on a writable file system") from e
    if is_chief:  # Before anything is read or written there; the others do not block.
      lock.acquire(workdir)
    rundir.check_resumable(workdir, c)

  # --- Input: device mode puts the split on the devices once; stream mode reads it per batch. --
  builder_dir = _prepare_data(config, data_dir, manual_dir, download)
  num_train = dataset.num_examples(builder_dir, "train")
  # config.input.train_labels: the split is restricted to train_index (None: all of it), the
  # same examples in the same order in both input modes; the test metrics use those labels too.
  train_labels, train_index = config.input.train_labels, None
  if train_labels is not None:
    validation.validate_train_labels(config, dataset.num_classes(builder_dir))
  if config.input_mode == "stream":
    train_images, train_source = None, input_pipeline.open_source(builder_dir, "train")
    image_shape = input_pipeline.image_shape(train_source)
    if train_labels is not None:
      train_index = dataset.label_indices(dataset.load_labels(builder_dir, "train"), train_labels)
  else:  # Every process holds the whole (small) split.
    train_images, labels_N = dataset.load_split(builder_dir, "train")
    image_shape = train_images.shape[1:]
    if train_labels is not None:
      train_index = dataset.label_indices(labels_N, train_labels)
      train_images = train_images[train_index]
  if train_index is not None:
    validation.validate_train_labels(config, dataset.num_classes(builder_dir), len(train_index))
    num_train = len(train_index)
  validation.validate_data(config, num_train)
  validation.validate_image_shape(config, image_shape)
  test_images, test_labels = dataset.load_split(builder_dir, "test")
  test_images = test_images[dataset.label_indices(test_labels, train_labels)]
  steps_per_epoch = num_train // config.batch_size  # The remainder waits a permutation.
  logging.info("Data: %d train and %d test images of shape %s (labels: %s); %d steps per epoch",
               num_train, len(test_images), image_shape,
               "all" if train_labels is None else tuple(train_labels), steps_per_epoch)
  mesh = parallel.make_mesh()
  if train_images is not None:
    train_images = parallel.put_replicated(train_images, mesh)
  test_images, test_mask = pad_to_multiple(test_images, config.eval_batch_size)
  test_images = parallel.put_replicated(test_images, mesh)
  test_mask = parallel.put_replicated(test_mask, mesh)

  # --- Model and optimizer; a group stacks its runs' keys, hyperparameters and states. --------
  num_runs = len(configs)
  model = models.create_model(config.model, image_shape, config.dtype)
  for c in configs:  # Each run's schedule is checked on its own values.
    optimizers.create_optimizer(c, steps_per_epoch)
  make_tx = functools.partial(optimizers.create_optimizer, config, steps_per_epoch)
  tx = make_tx(hparams.of(config))  # Only its state's structure is used outside the step.
  runs = [{"keys": split_keys(c.seed), "hp": hparams.of(c)} for c in configs]
  # Layout of a group: the run axis split over the devices when it divides evenly (each run on
  # one device, no all-reduce), else every run data-parallel over all of them.
  run_sharded = vectorized and mesh.size > 1 and num_runs % mesh.size == 0
  state_sharding = (parallel.batch_sharded(mesh) if run_sharded else parallel.replicated(mesh))
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
  take = (lambda tree, i: jax.tree.map(lambda x: x[i], tree)) if vectorized else (
      lambda tree, i: tree)
  run = jax.device_put(stack(runs), state_sharding) if vectorized else runs[0]
  init = functools.partial(init_state, image_shape=image_shape, model=model, tx=tx)
  if vectorized:  # Before anything is allocated: a group too large for memory is bad input.
    check_fits(jax.eval_shape(init, runs[0]["keys"]["init"]), num_runs,
               mesh.size if run_sharded else 1)
  state = jax.jit(jax.vmap(init) if vectorized else init,
                  out_shardings=state_sharding)(run["keys"]["init"])
  num_params = sum(x.size for x in jax.tree.leaves(take(state, 0).params))
  layout = "the run axis split over" if run_sharded else "each run data-parallel over"
  logging.info("Model %s with %s parameters%s", config.model.name, f"{num_params:,}",
               f"; a vectorised group of {num_runs} runs, {layout} {mesh.size} device(s)"
               if vectorized else "")

  # --- Checkpoint: resume from the latest one if the workdir has it. ------------------------
  ckpt_dirs = [os.path.join(w, "checkpoints") for w in workdirs]
  mngrs = [checkpoint.manager(d, config.checkpoint.max_to_keep) for d in ckpt_dirs]
  writers = [metrics_lib.MetricWriter(w, enabled=is_chief) for w in workdirs]
  epochs_done, epoch_step, sums = 0, 0, [{} for _ in configs]
  resumed = [checkpoint.restore_latest(m, take(state, i), allow_fallback)
             for i, m in enumerate(mngrs)]
  if len({r[0] if r else None for r in resumed}) > 1:
    where = ", ".join(f"{w}: {r[0] if r else 'none'}" for w, r in zip(workdirs, resumed))
    raise UserError(f"the runs of this group have checkpoints at different steps ({where}); "
                    f"resume each alone with aejax.main, or remove the group's run directories")
  resumed = resumed[0] and (resumed[0][0], [r[1] for r in resumed], [r[2] for r in resumed])
  if resumed:
    step, states, metas = resumed
    state = jax.device_put(stack(states), state_sharding) if vectorized else states[0]
    meta = metas[0]
    if meta["steps_per_epoch"] != steps_per_epoch:
      raise UserError(f"the checkpoint at step {step} has {meta['steps_per_epoch']} steps per "
                      f"epoch, this config {steps_per_epoch}; resume with the original batch "
                      f"size or use --force_new")
    epochs_done, epoch_step, sums = meta["epoch"], meta["epoch_step"], [
        m["metric_sums"] for m in metas]
    logging.info("Resuming from the checkpoint at step %d: epochs 1-%d are done, starting "
                 "epoch %d of %d at step %d of %d", step, epochs_done, epochs_done + 1,
                 config.num_epochs, epoch_step, steps_per_epoch)
  # Lines written after the checkpoint describe work about to be redone (all of them if a crash
  # came before the first checkpoint).
  for writer, c, workdir in zip(writers, configs, workdirs):
    writer.drop_after(resumed[0] if resumed else 0)
    if is_chief:
      rundir.write_config(workdir, c)

  # --- Update step and evals, compiled ahead so compile time is not counted as training. -----
  # pmap wants state and data with a leading local-device axis; between calls the state is kept
  # in the mesh layout, which evaluation and checkpoints share with the default path.
  pmap = config.parallel == "pmap"
  metrics_fn = functools.partial(per_example_metrics, model=model, config=config)
  step_fn = functools.partial(train_step, model=model, tx=make_tx, config=config,
                              axis_name=parallel.DATA_AXIS if pmap else None)
  to_call = parallel.to_pmap if pmap else (lambda tree: tree)
  from_call = functools.partial(parallel.from_pmap, mesh=mesh) if pmap else (lambda tree: tree)
  chunk = min(config.steps_per_call or steps_per_epoch, steps_per_epoch)
  t0 = time.time()
  if config.input_mode == "stream":  # grain feeds the same step; the same call signature.
    run_chunk = input_pipeline.StreamEpochs(
        step_fn, train_source, batch_size=config.batch_size, steps_per_epoch=steps_per_epoch,
        num_examples=num_train, num_epochs=config.num_epochs, keys=runs[0]["keys"], mesh=mesh,
        num_workers=config.input_workers, state=state, mode=config.parallel,
        index_map=train_index)
  else:
    if pmap:
      train_images = parallel.to_pmap(train_images)
    loop = loops.resolve(config.loop, config.model.encoder, jax.default_backend())
    logging.info("Train steps run as %s (config.loop=%r)", loop, config.loop)
    train_chunk = make_train_chunk(step_fn, batch_size=config.batch_size, mesh=mesh,
                                   mode=config.parallel, loop=loop, vectorized=vectorized,
                                   run_sharded=run_sharded)
    # A compiled pmap takes global arrays, a pmap call each process's local ones (the layout
    # to_pmap builds without moving data between hosts): across processes pmap is called, and
    # compiles at its first call.
    call_pmap = pmap and jax.process_count() > 1
    compiled = {} if call_pmap else {
        chunk: train_chunk.lower(to_call(state), train_images, 1, 0, chunk, run).compile()}

    def run_chunk(state, epoch, start, num_steps):
      if call_pmap:
        return from_call(train_chunk(to_call(state), train_images, epoch, start, num_steps, run))
      if num_steps not in compiled:  # At most two sizes: steps_per_call and an epoch's rest.
        compiled[num_steps] = train_chunk.lower(to_call(state), train_images, epoch, start,
                                                num_steps, run).compile()
      return from_call(compiled[num_steps](to_call(state), train_images, epoch, start, run))

  evaluate = make_evaluate(metrics_fn, eval_batch_size=config.eval_batch_size, mesh=mesh,
                           config=config, vectorized=vectorized).lower(
                               state.params, test_images, test_mask, run).compile()
  logging.info("Compiled %d-step train calls and the evaluation in %.1fs", chunk,
               time.time() - t0)

  def save(state, epochs_done, epoch_step, sums):
    step = epochs_done * steps_per_epoch + epoch_step
    for i, mngr in enumerate(mngrs):
      checkpoint.save(mngr, step, take(state, i), {
          "epoch": epochs_done, "epoch_step": epoch_step, "steps_per_epoch": steps_per_epoch,
          "metric_sums": sums[i]})

  def preempted(signal_name, epochs_done, epoch_step):
    for mngr in mngrs:
      checkpoint.wait(mngr)
    step = epochs_done * steps_per_epoch + epoch_step
    return Preempted(f"stopped by {signal_name} at step {step} (epoch {epochs_done + 1}, step "
                     f"{epoch_step} of {steps_per_epoch}); checkpoint written to "
                     f"{' '.join(ckpt_dirs)}; re-run the same command to resume")

  # --- The loop. ----------------------------------------------------------------------------
  epoch_seconds = []
  for epoch in range(epochs_done + 1, config.num_epochs + 1):
    t0, steps_run = time.time(), 0
    while epoch_step < steps_per_epoch:
      num_steps = min(chunk, steps_per_epoch - epoch_step)
      new_state, chunk_sums = run_chunk(state, epoch, epoch_step, num_steps)
      chunk_sums = jax.device_get(chunk_sums)  # Waits for the call to finish.
      bad = np.atleast_1d(chunk_sums.pop("first_nonfinite"))
      for i in np.flatnonzero(bad >= 0):
        checkpoint.wait(mngrs[i])  # The last good checkpoint may still be being written.
        good = mngrs[i].latest_step()
        where = (f"step {good} in {ckpt_dirs[i]}" if good is not None
                 else "none: no checkpoint yet")
        raise Diverged(f"non-finite loss at step "
                       f"{(epoch - 1) * steps_per_epoch + epoch_step + int(bad[i])} (epoch "
                       f"{epoch}{', run ' + workdirs[i] if vectorized else ''}); the last good "
                       f"checkpoint is {where}, kept intact")
      state, epoch_step, steps_run = new_state, epoch_step + num_steps, steps_run + num_steps
      sums = [{k: sums[i].get(k, 0.0) + float(v) for k, v in take(chunk_sums, i).items()}
              for i in range(num_runs)]
      if epoch_step < steps_per_epoch and watcher.should_stop():
        save(state, epoch - 1, epoch_step, sums)
        raise preempted(watcher.signal_name, epoch - 1, epoch_step)
    epoch_seconds.append(time.time() - t0)

    step = epoch * steps_per_epoch
    examples_per_sec = steps_run * config.batch_size / epoch_seconds[-1]
    lines = []
    for i, writer in enumerate(writers):
      train_metrics = {k: v / steps_per_epoch for k, v in sums[i].items()}
      writer.write(step, epoch, "train", {**train_metrics, "examples_per_sec": examples_per_sec})
      lines.append((f"{workdirs[i]} | " if vectorized else "") + (
          f"epoch {epoch}/{config.num_epochs} step {step} | train loss "
          f"{train_metrics['loss']:.4f}"))
    epoch_step, sums = 0, [{} for _ in configs]
    # A stop asked for during the epoch is checkpointed before the evaluation, which can outlast
    # the grace period (a k = 5000 NLL); the evaluation still runs, for the epoch's test line.
    saved = stop = watcher.should_stop()
    if stop:
      save(state, epoch, 0, sums)
    if epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs:
      all_test_metrics = jax.device_get(evaluate(state.params, test_images, test_mask, run))
      for i, writer in enumerate(writers):
        test_metrics = take(all_test_metrics, i)
        writer.write(step, epoch, "test", test_metrics)
        lines[i] += " | test " + " ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))
    stop = stop or watcher.should_stop()
    if not saved and (epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs
                      or stop):
      save(state, epoch, 0, sums)
    eta = np.mean(epoch_seconds) * (config.num_epochs - epoch)
    for line in lines:
      logging.info("%s | %s ex/s | ETA %s", line, f"{examples_per_sec:,.0f}",
                   metrics_lib.format_duration(eta))
    if stop and epoch < config.num_epochs:
      raise preempted(watcher.signal_name, epoch, 0)

  if epochs_done >= config.num_epochs:
    logging.info("Nothing to do: the checkpoint already holds %d of %d epochs",
                 epochs_done, config.num_epochs)
  if config.input_mode == "stream":
    run_chunk.close()  # Ends grain's worker processes.
  for mngr, writer, workdir in zip(mngrs, writers, workdirs):
    checkpoint.wait(mngr)
    mngr.close()
    writer.close()
    lock.release(workdir)  # On an error it stays held until the process ends.
  return state
