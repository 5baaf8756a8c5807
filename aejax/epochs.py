"""What one epoch is, for both input modes, and the device-resident epoch and evaluation.

An epoch `e` of a run visits `permutation(keys['data'], e, N)` in steps of `batch_size` (the
remainder waits for a later permutation); step `s` draws its randomness from
`step_key(keys['train'], s)`; a call of several steps returns `summarize`'s per-metric sums and the
first step whose loss or gradient was not finite. The device path (`make_train_chunk`, here) and
the stream path (`data/input_pipeline.py`) both use these three, which is what makes them train the
same parameters.

Every call takes the run as its last argument: `run = {"keys": split_keys(seed), "hp":
hparams.of(config)}` (aejax/group.py builds it, stacked over a group's runs), so a run's keys and
hyperparameters are arrays, never constants baked into the program.
"""

import functools
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from aejax import objectives
from aejax import parallel
from aejax import sampling

Metrics = dict[str, jax.Array]


# --- The epoch's mechanics ---------------------------------------------------------------------

def permutation(data_key: jax.Array, epoch: jax.Array | int, num_examples: int) -> jax.Array:
  """The order in which epoch `epoch` visits the examples."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def step_key(train_key: jax.Array, step: jax.Array | int) -> jax.Array:
  """The key of train step `step`: the step number, not the history, decides the randomness."""
  return jax.random.fold_in(train_key, step)


def is_finite(metrics: Metrics) -> jax.Array:
  """Whether a step's loss and gradient are finite (its update can be trusted)."""
  return jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])


def summarize(metrics: Metrics) -> Metrics:
  """Per-step metrics ([num_steps] per name) -> their sums, and under 'first_nonfinite' the index
  of the first step whose loss or gradient was not finite (-1 if none)."""
  bad = ~is_finite(metrics)
  sums = jax.tree.map(jnp.sum, metrics)
  sums["first_nonfinite"] = jnp.where(jnp.any(bad), jnp.argmax(bad), -1)
  return sums


# --- Device-resident epochs --------------------------------------------------------------------

def make_train_chunk(step_fn: Callable, *, batch_size: int, mesh: jax.sharding.Mesh,
                     mode: str = "mesh", loop: str = "scan", vectorized: bool = False,
                     group_runs: str = "vmap",
                     run_sharded: bool = False) -> Any:
  """(state, images_NxHxWxC uint8, epoch, start, num_steps, run) -> (state, sums), on device.

  Runs steps start, ..., start + num_steps - 1 of `epoch` (num_steps is static) and returns
  `summarize`'s sums over them. `step_fn(state, x, rng, hp=...)` is the train step. mode 'mesh':
  jit over the mesh; `step_fn` sees the global batch, sharded on 'data'. mode 'pmap': state and
  images carry a leading device axis, each device gathers its slice of every global batch and
  `step_fn` must average over parallel.DATA_AXIS. `loop` (a resolved loops.LOOPS choice) says how
  the steps execute; each has the jitted function's `.lower(...).compile()` interface and gives the
  same batches, keys and sums.

  `vectorized`: state, run and the results carry a leading run axis and the steps are vmapped over
  it (one program for a group of runs; a run that stops being finite cannot touch the others'
  slices, so the steps need no per-run mask: the trainer stops saving and recording it).
  `run_sharded` splits the run axis over the mesh, each run's batch then whole on its device (no
  all-reduce), instead of splitting every run's batch. `group_runs` (config.group_runs): 'vmap'
  batches each op over the run axis, 'unroll' writes each run's steps out once per run.
  """
  local_batch = batch_size // mesh.size
  batch_sharding = parallel.batch_sharded(mesh)

  def epoch_order(images_NxHxWxC, epoch, run):
    return permutation(run["keys"]["data"], epoch, images_NxHxWxC.shape[0])

  def body(state, perm_N, images_NxHxWxC, i, run):
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
    return step_fn(state, x_b, step_key(run["keys"]["train"], state.step), hp=run["hp"])

  def one_run(state, images_NxHxWxC, epoch, start, num_steps, run):
    perm_N = epoch_order(images_NxHxWxC, epoch, run)
    state, metrics = jax.lax.scan(lambda s, i: body(s, perm_N, images_NxHxWxC, i, run), state,
                                  start + jnp.arange(num_steps), unroll=loop == "unroll")
    return state, summarize(metrics)

  # The run axis: over state, permutation and run; images and step index are shared.
  if not vectorized:
    over_runs = lambda f, in_axes: f
  elif group_runs == "unroll":
    over_runs = unrolled
  else:
    over_runs = lambda f, in_axes: jax.vmap(
        f, in_axes=in_axes, spmd_axis_name=parallel.DATA_AXIS if run_sharded else None)

  def train_chunk(state, images_NxHxWxC, epoch, start, num_steps, run):
    return over_runs(lambda s, r: one_run(s, images_NxHxWxC, epoch, start, num_steps, r),
                     (0, 0))(state, run)

  if loop == "host":
    order_r = over_runs(epoch_order, (None, None, 0))
    body_r = over_runs(body, (0, 0, None, None, 0))
    stack = lambda ms: over_runs(summarize, 0)(jax.tree.map(lambda *m: jnp.stack(m, -1), *ms))
    if mode == "pmap":
      wrap = functools.partial(jax.pmap, axis_name=parallel.DATA_AXIS)
      return _HostLoop(wrap(order_r, in_axes=(0, None, None)),
                       wrap(body_r, in_axes=(0, 0, 0, None, None), donate_argnums=0), wrap(stack))
    return _HostLoop(jax.jit(order_r), jax.jit(body_r, donate_argnums=0), jax.jit(stack))
  if mode == "pmap":
    # pmap indexes in_axes by position, the static num_steps (argument 4) included.
    return jax.pmap(train_chunk, axis_name=parallel.DATA_AXIS,
                    in_axes=(0, 0, None, None, None, None), static_broadcasted_argnums=4,
                    donate_argnums=0)
  return jax.jit(train_chunk, static_argnums=4, donate_argnums=0)


def unrolled(f: Callable, in_axes: int | tuple[int | None, ...]) -> Callable:
  """jax.vmap(f, in_axes) for in_axes of 0 (the run axis) and None (shared), as one call of f
  per run, their results stacked: inside jit, each run's ops are a run alone's, unbatched."""

  def call(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    num_runs = next(jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, axes) if ax == 0)
    outs = [f(*(jax.tree.map(lambda x: x[i], a) if ax == 0 else a for a, ax in zip(args, axes)))
            for i in range(num_runs)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return call


class _HostLoop:
  """A chunk as a Python loop over one compiled step, behind a jitted chunk's interface.

  `lower(state, images, epoch, start, num_steps, run).compile()` compiles the permutation and
  the step ahead (their shapes do not depend on num_steps) and returns
  `(state, images, epoch, start, run) -> (state, sums)`. Steps are dispatched without waiting,
  so the host runs ahead of the device; the per-step metrics are stacked and summed on device.
  """

  def __init__(self, order: Callable, step: Callable, stack: Callable):
    self._order, self._step, self._stack = order, step, stack
    self._compiled = None  # (order, step): one compile serves every num_steps.

  def lower(self, state, images, epoch, start, num_steps, run):
    if self._compiled is None:
      order = self._order.lower(images, epoch, run).compile()
      perm_N = order(images, epoch, run)
      self._compiled = (order, self._step.lower(state, perm_N, images, start, run).compile())
    order, step = self._compiled
    call = lambda state, images, epoch, start, run: self._run(
        order, step, state, images, epoch, start, num_steps, run)
    return types.SimpleNamespace(compile=lambda: call)

  def __call__(self, state, images, epoch, start, num_steps, run):
    """Uncompiled: as a pmap across processes is called (it takes each process's arrays)."""
    return self._run(self._order, self._step, state, images, epoch, start, num_steps, run)

  def _run(self, order, step, state, images, epoch, start, num_steps, run):
    perm_N = order(images, epoch, run)
    metrics = []
    for i in range(start, start + num_steps):
      state, m = step(state, perm_N, images, i, run)
      metrics.append(m)
    return state, self._stack(metrics)


def make_evaluate(params_metrics_fn: Callable, *, eval_batch_size: int, mesh: jax.sharding.Mesh,
                  config: ml_collections.ConfigDict, vectorized: bool = False) -> Callable:
  """(params, images_MxHxWxC, mask_M, run) -> per-image means over the unmasked images, and
  the batch statistics of all of them (objectives.from_sums; `config` names their parameters).

  The same eval key every time: a stochastic objective (dynamic binarisation, posterior samples)
  is scored on the same draws at every evaluation, so epochs compare like with like. Eval batch
  i draws from fold_in(eval key, i), one draw of the batch's shape as in the train step: the
  same on any device split; another eval_batch_size draws other noise (aejax.analyze's
  per-image draws do not depend on the batch).
  `vectorized`: params and run carry a leading run axis, and so do the results.
  """
  batch_sharding = parallel.batch_sharded(mesh)

  def evaluate(params, images_MxHxWxC, mask_M, run):
    eval_key, hp = run["keys"]["eval"], run["hp"]
    num_batches = images_MxHxWxC.shape[0] // eval_batch_size
    metrics_fn = functools.partial(params_metrics_fn, hp=hp)

    def body(totals, i):
      x_B = jax.lax.dynamic_slice_in_dim(images_MxHxWxC, i * eval_batch_size, eval_batch_size)
      m_B = jax.lax.dynamic_slice_in_dim(mask_M, i * eval_batch_size, eval_batch_size)
      x_B = jax.lax.with_sharding_constraint(x_B, batch_sharding)
      per_example = metrics_fn(params, x_B, sampling.Stream(jax.random.fold_in(eval_key, i)))
      # Masked sums over the batch axis; a POOLED [B, ...] array keeps its trailing axes.
      return {k: totals[k] + jnp.tensordot(m_B, v, axes=1) for k, v in per_example.items()}, None

    # Which metrics exist depends on the config, not on the values in `hp`.
    shapes = jax.eval_shape(metrics_fn, params, images_MxHxWxC[:eval_batch_size],
                            sampling.Stream(eval_key))
    zeros = {k: jnp.zeros(v.shape[1:], jnp.float32) for k, v in shapes.items()}
    totals, _ = jax.lax.scan(body, zeros, jnp.arange(num_batches))
    return objectives.from_sums(totals, jnp.sum(mask_M), config, hp)

  if vectorized:
    return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0)))
  return jax.jit(evaluate)
