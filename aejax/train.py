"""The pure train and eval steps, and the trainer in named phases.

`train_group` trains a group of runs (a run alone is a group of one, without the run axis):
1. opening the run directories (`GroupDirs.open`: checks, locks, managers, writers);
2. loading the data (`data/splits.py`: `load_data` -> `Data`);
3. the model, optimizer and run inputs (`init_group`), the state resumed or fresh (`start`);
4. building the runner (`build_runner`: the compiled epoch chunks and the evaluation);
5. an evaluation cut short before the resume point redone (`evaluate_missing`), then one epoch
   at a time (`train_epoch`, then `end_epoch`: metrics, checkpoint, evaluation).
Every way out of `train_group` releases what phases 1 and 4 hold.

The loop keeps a small dataset (MNIST) on the devices: each epoch draws its permutation on device
and runs its steps as `lax.scan`s inside jit calls of `steps_per_call` steps (default: the whole
epoch), so the host does no per-step work (conv models on CPU run a host loop over one jitted
step instead: aejax/loops.py says why); aejax/epochs.py holds what an epoch is. The data
position is (epoch, step in epoch) and is in every checkpoint, which makes a resumed run bitwise
equal to an uninterrupted one.
"""

import dataclasses
import functools
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax import epochs
from aejax import group
from aejax import hparams
from aejax import families
from aejax import likelihood
from aejax import loops
from aejax import memory
from aejax import objectives
from aejax import optimizers
from aejax import parallel
from aejax import preprocess
from aejax import sampling
from aejax.data import input_pipeline
from aejax.data.splits import Data, load_data
from aejax.errors import Diverged, Preempted
from aejax.run import metrics as metrics_lib
from aejax.run import preemption
from aejax.run import rundir
from aejax.run.group_dirs import GroupDirs, Position
from aejax.state import TrainState

Metrics = dict[str, jax.Array]


# --- The pure steps ----------------------------------------------------------------------------

def per_example_metrics(params: Any, x_uint8: jax.Array, stream: sampling.Stream, *,
                        hp: hparams.Hparams, model: Any, config: ml_collections.ConfigDict,
                        training: bool, step: jax.Array | None = None,
                        axis_name: str | None = None) -> Metrics:
  """Scores a batch of uint8 images: a dict of [B] arrays with the objective under 'loss'.

  `stream` is the batch's randomness (binarisation, corruption, the family's streams): one key
  drawing for the whole global batch, or one key per example (aejax/sampling.py), the same
  however the batch is split across devices. `hp`: the run's hyperparameters (hparams.of). `training`: the
  train step's objective, at train step `step` (schedules such as the KL warm-up); else
  evaluation's, which adds the evaluation-only metrics (the test NLL of
  `config.eval_num_samples`).
  """
  streams = sampling.streams(stream)
  x = preprocess.binarize(preprocess.to_unit_interval(x_uint8), streams.input,
                          config.input.binarize)
  # Denoising: the model sees a corrupted copy, the objective scores it against the clean x.
  x_in = preprocess.corrupt(x, streams.corrupt, config.input.corruption, hp["input.noise_level"])
  return objectives.per_example(model, params, x_in, x, streams, config, hp, training=training,
                                step=step, axis_name=axis_name)


def train_step(state: TrainState, x_uint8: jax.Array, rng: jax.Array, *, hp: hparams.Hparams,
               model: Any, tx: Callable[[hparams.Hparams], optax.GradientTransformation],
               config: ml_collections.ConfigDict,
               axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One optimizer update on a global batch; metrics are batch means before the update.

  `hp` holds the run's hyperparameters as arrays and `tx` builds the optimizer from them
  (optimizers.for_runs), so one program serves any values.

  Under `jit` over a mesh, `x_uint8` is the global batch (sharded) and `axis_name` is None: XLA
  inserts the gradient all-reduce. Under `pmap`, `x_uint8` is this device's slice and the
  gradients and metrics are averaged over `axis_name` explicitly. The same function serves both.
  """
  # One draw of the global batch's shape per purpose; under pmap each device keeps its rows.
  stream = sampling.Stream(rng, axis_name)

  def loss_fn(params):
    per_example = per_example_metrics(params, x_uint8, stream, hp=hp, model=model,
                                      config=config, training=True, step=state.step,
                                      axis_name=axis_name)
    means = {k: jnp.mean(v) for k, v in per_example.items()}
    return means["loss"], means

  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  if axis_name:  # Equal local batches, so the mean of local means is the global mean.
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  updates, opt_state = tx(hp).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


# --- Phase 3: model, optimizer and the group's state -------------------------------------------

@dataclasses.dataclass
class Group:
  """What the loop trains: the layout, model, optimizer, the stacked run inputs and state, and
  where training stands."""
  configs: list[ml_collections.ConfigDict]
  layout: group.Layout
  model: Any
  make_tx: Callable[[hparams.Hparams], optax.GradientTransformation]
  run: dict[str, Any]  # group.run_inputs of every run, stacked (vectorized) and placed.
  like: TrainState  # One run's state as shapes and dtypes.
  state: TrainState | None = None
  position: Position | None = None


def init_group(configs: list[ml_collections.ConfigDict], data: Data,
               layout: group.Layout) -> Group:
  """The model and the optimizer, one program whose runs' values enter as arrays (the optimizer
  is config.opt's, built from each run's own hyperparameters), and the runs' stacked inputs."""
  config = configs[0]  # Everything but seed and hparams.FIELDS is the same in every run.
  model = families.create_model(config.model, data.image_shape, config.dtype)
  for c in configs:  # Each run's schedule is checked on its own values.
    optimizers.create_optimizer(c, data.steps_per_epoch)
  make_tx = optimizers.for_runs(config, data.steps_per_epoch)
  like = group.abstract_state(image_shape=data.image_shape, model=model,
                              tx=make_tx(hparams.of(config)))
  if layout.vectorized:  # Before anything is allocated: a group too large for memory is bad input.
    group.check_fits(like, layout)
  num_params = sum(x.size for x in jax.tree.leaves(like.params))
  logging.info("Model %s with %s parameters%s", config.model.name, f"{num_params:,}",
               layout.describe())
  run = layout.stack([group.run_inputs(c, num_train=data.num_train) for c in configs])
  return Group(configs, layout, model, make_tx, run, like)


def start(g: Group, data: Data, dirs: GroupDirs | None = None,
          allow_fallback: bool = False) -> None:
  """Sets g.state and g.position: resumed from the group's newest common checkpoint in `dirs`,
  else initialised on the devices (only then: a resume never holds a second copy)."""
  resumed = dirs and dirs.resume(g.layout, g.like, data.steps_per_epoch, allow_fallback)
  if resumed:
    g.state, g.position = resumed
    logging.info("Resuming from the checkpoint at step %d: epochs 1-%d are done, starting "
                 "epoch %d of %d at step %d of %d", g.position.step(data.steps_per_epoch),
                 g.position.epochs_done, g.position.epochs_done + 1, g.configs[0].num_epochs,
                 g.position.epoch_step, data.steps_per_epoch)
    return
  g.state = group.initial_state(g.layout, g.run, image_shape=data.image_shape, model=g.model,
                                tx=g.make_tx(hparams.of(g.configs[0])))
  g.position = Position(0, 0, [{} for _ in g.configs])


# --- Phase 4: the runner -----------------------------------------------------------------------

@dataclasses.dataclass
class Runner:
  """`chunk(state, epoch, start, num_steps, run) -> (state, sums)` and
  `evaluate(params, run) -> test metrics`, compiled ahead; `close` ends the stream's workers."""
  chunk: Callable
  evaluate: Callable
  steps_per_call: int
  close: Callable[[], None]


def build_runner(g: Group, data: Data) -> Runner:
  """Compiles the train calls and the evaluation ahead, so compile time is not counted as
  training. pmap wants state and data with a leading local-device axis; between calls the state
  is kept in the mesh layout, which evaluation and checkpoints share with the default path."""
  config, layout = g.configs[0], g.layout
  pmap = config.parallel == "pmap"
  step_fn = functools.partial(train_step, model=g.model, tx=g.make_tx, config=config,
                              axis_name=parallel.DATA_AXIS if pmap else None)
  per_call = min(config.steps_per_call or data.steps_per_epoch, data.steps_per_epoch)
  t0 = time.time()
  if config.input_mode == "stream":  # grain feeds the same step; the same call signature.
    stream = input_pipeline.StreamEpochs(
        step_fn, data.train_source, batch_size=config.batch_size,
        steps_per_epoch=data.steps_per_epoch, num_examples=data.num_train,
        num_epochs=config.num_epochs, run=g.run, mesh=layout.mesh,
        num_workers=config.input_workers, state=g.state, mode=config.parallel,
        index_map=data.train_index)
    chunk, close = stream, stream.close
  else:
    chunk, close = _device_chunk(step_fn, g, data, per_call), lambda: None
  eval_config = with_eval_chunk(g, data)
  evaluate = epochs.make_evaluate(
      functools.partial(per_example_metrics, model=g.model, config=eval_config, training=False),
      eval_batch_size=config.eval_batch_size, mesh=layout.mesh, config=eval_config,
      vectorized=layout.vectorized).lower(g.state.params, data.test_images, data.test_mask,
                                          g.run).compile()
  logging.info("Compiled %d-step train calls and the evaluation in %.1fs", per_call,
               time.time() - t0)
  return Runner(chunk, lambda params, run: evaluate(params, data.test_images, data.test_mask,
                                                    run), per_call, close)


def with_eval_chunk(g: Group, data: Data) -> ml_collections.ConfigDict:
  """The config the evaluation runs with: config.eval_sample_chunk lowered to what fits
  config.eval_memory_bytes (likelihood.sample_chunk) for the images a device holds, those of
  every run of the group at once. The test NLL is the same for any chunk."""
  config = g.configs[0]
  if not (config.eval_num_samples and families.of(config).LIKELIHOOD):
    return config
  budget, budget_text = memory.eval_budget(config.eval_memory_bytes,
                                           "--config.eval_memory_bytes")
  images = -(-config.eval_batch_size * g.layout.num_runs // g.layout.mesh.size)
  chunk = likelihood.sample_chunk(
      g.model, g.like.params, jax.ShapeDtypeStruct(data.image_shape, jnp.float32), images,
      config.eval_num_samples, config.eval_sample_chunk, budget, budget_text)
  logging.info("Test NLL: %d samples in chunks of %d for the %d images a device evaluates at "
               "once (evaluation memory: %s)", config.eval_num_samples, chunk, images,
               budget_text)
  eval_config = config.copy_and_resolve_references()
  eval_config.eval_sample_chunk = chunk
  return eval_config


def _device_chunk(step_fn: Callable, g: Group, data: Data, per_call: int) -> Callable:
  """The device-resident chunk (epochs.make_train_chunk) behind the runner's call."""
  config, mesh = g.configs[0], g.layout.mesh
  pmap = config.parallel == "pmap"
  to_call = parallel.to_pmap if pmap else (lambda tree: tree)
  from_call = functools.partial(parallel.from_pmap, mesh=mesh) if pmap else (lambda tree: tree)
  images = parallel.to_pmap(data.train_images) if pmap else data.train_images
  loop = loops.resolve(config.loop, config.model.encoder, jax.default_backend())
  logging.info("Train steps run as %s (config.loop=%r)", loop, config.loop)
  train_chunk = epochs.make_train_chunk(step_fn, batch_size=config.batch_size, mesh=mesh,
                                        mode=config.parallel, loop=loop,
                                        vectorized=g.layout.vectorized,
                                        group_runs=config.group_runs,
                                        run_sharded=g.layout.run_sharded)
  # A compiled pmap takes global arrays, a pmap call each process's local ones (the layout
  # to_pmap builds without moving data between hosts): across processes pmap is called, and
  # compiles at its first call.
  call_pmap = pmap and jax.process_count() > 1
  compiled = {} if call_pmap else {
      per_call: train_chunk.lower(to_call(g.state), images, 1, 0, per_call, g.run).compile()}

  def chunk(state, epoch, start, num_steps, run):
    if call_pmap:
      return from_call(train_chunk(to_call(state), images, epoch, start, num_steps, run))
    if num_steps not in compiled:  # At most two sizes: steps_per_call and an epoch's rest.
      compiled[num_steps] = train_chunk.lower(to_call(state), images, epoch, start, num_steps,
                                              run).compile()
    return from_call(compiled[num_steps](to_call(state), images, epoch, start, run))
  return chunk


# --- Phase 5: one epoch ------------------------------------------------------------------------

def train_epoch(g: Group, runner: Runner, dirs: GroupDirs, watcher: preemption.PreemptionWatcher,
                epoch: int, spe: int) -> float:
  """Runs the rest of `epoch` call by call, updating g.state and g.position; a run whose loss
  stops being finite is recorded (a run alone stops: Diverged); a signal checkpoints and stops
  (Preempted). Returns the epoch's examples per second."""
  t0, steps_run, pos = time.time(), 0, g.position
  while pos.epoch_step < spe:
    num_steps = min(runner.steps_per_call, spe - pos.epoch_step)
    state, sums = runner.chunk(g.state, epoch, pos.epoch_step, num_steps, g.run)
    sums = jax.device_get(sums)  # Waits for the call to finish.
    bad = np.atleast_1d(sums.pop("first_nonfinite"))
    for i in np.flatnonzero(bad >= 0):
      if dirs.live[i]:
        _diverged(g, dirs, i, (epoch - 1) * spe + pos.epoch_step + int(bad[i]), epoch)
    g.state, steps_run = state, steps_run + num_steps
    pos.epoch_step += num_steps
    pos.sums = [{k: pos.sums[i].get(k, 0.0) + float(v) for k, v in _take(sums, i, g).items()}
                for i in range(len(g.configs))]
    if pos.epoch_step < spe and watcher.should_stop():
      dirs.save(g.layout, g.state, pos, spe)
      raise _preempted(dirs, watcher, pos, spe)
  return steps_run * g.configs[0].batch_size / (time.time() - t0)


def _take(tree: Any, i: int, g: Group) -> Any:
  return jax.tree.map(lambda x: x[i], tree) if g.layout.vectorized else tree


def _diverged(g: Group, dirs: GroupDirs, i: int, step: int, epoch: int) -> None:
  """Run i diverged at `step`: recorded in its directory; alone it stops here, in a group the
  others go on (vmapped, its non-finite slice cannot reach theirs) and it is no longer saved or
  recorded: its last good checkpoint is what it leaves."""
  message = dirs.diverged(i, step, epoch)
  if not g.layout.vectorized:
    raise Diverged(message)
  logging.error("%s", message)


def _preempted(dirs: GroupDirs, watcher: preemption.PreemptionWatcher, pos: Position,
               spe: int) -> Preempted:
  dirs.wait()
  step = pos.step(spe)
  return Preempted(f"stopped by {watcher.signal_name} at step {step} (epoch "
                   f"{pos.epochs_done + 1}, step {pos.epoch_step} of {spe}); checkpoint written "
                   f"to {' '.join(m.directory.as_posix() for m in dirs.mngrs)}; re-run the same "
                   f"command to resume")


def end_epoch(g: Group, runner: Runner, dirs: GroupDirs, watcher: preemption.PreemptionWatcher,
              epoch: int, spe: int, examples_per_sec: float, eta: float) -> None:
  """The epoch's train lines, its checkpoint (every checkpoint.every_epochs, the last, and on a
  stop) and its evaluation (every eval_every_epochs and the last). The checkpoint is on disk
  before the evaluation starts, which can outlast a grace period or fail (a k = 5000 NLL): a kill
  there loses no epoch, and the re-run evaluates it alone (evaluate_missing)."""
  config = g.configs[0]
  step, lines = epoch * spe, {}
  for i, writer in enumerate(dirs.writers):
    if dirs.live[i]:
      train_metrics = {k: v / spe for k, v in g.position.sums[i].items()}
      writer.write(step, epoch, "train", {**train_metrics, "examples_per_sec": examples_per_sec})
      lines[i] = f"{_line_start(g, dirs, i, epoch, step)} | train " + " ".join(
          f"{k} {train_metrics[k]:.4f}" for k in ("loss", *families.reports(config))
          if k in train_metrics)
  g.position = Position(epoch, 0, [{} for _ in g.configs])
  stop = watcher.should_stop()
  saved = stop or epoch % config.checkpoint.every_epochs == 0 or epoch == config.num_epochs
  if saved:
    dirs.save(g.layout, g.state, g.position, spe)
  if _evaluated(config, epoch):
    if saved:
      dirs.wait()
    _evaluate(g, runner, dirs, epoch, step, lines)
  stop = stop or watcher.should_stop()
  if stop and not saved:  # Asked for during the evaluation.
    dirs.save(g.layout, g.state, g.position, spe)
  for line in lines.values():
    logging.info("%s | %s ex/s | ETA %s", line, f"{examples_per_sec:,.0f}",
                 metrics_lib.format_duration(eta))
  if stop and epoch < config.num_epochs:
    raise _preempted(dirs, watcher, g.position, spe)


def _evaluated(config: ml_collections.ConfigDict, epoch: int) -> bool:
  return epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs


def _line_start(g: Group, dirs: GroupDirs, i: int, epoch: int, step: int) -> str:
  return (f"{dirs.workdirs[i]} | " if g.layout.vectorized else "") + (
      f"epoch {epoch}/{g.configs[0].num_epochs} step {step}")


def _evaluate(g: Group, runner: Runner, dirs: GroupDirs, epoch: int, step: int,
              lines: dict[int, str]) -> None:
  """Evaluates the group and writes the test line of each run in `lines`, adding its numbers to
  that run's console line."""
  all_test_metrics = jax.device_get(runner.evaluate(g.state.params, g.run))
  for i in lines:
    test_metrics = _take(all_test_metrics, i, g)
    dirs.writers[i].write(step, epoch, "test", test_metrics)
    lines[i] += " | test " + " ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))


def evaluate_missing(g: Group, runner: Runner, dirs: GroupDirs, spe: int) -> None:
  """A group resumed at the end of an evaluated epoch whose test line a run lacks (the process
  was killed during that evaluation, its checkpoint already on disk) evaluates that epoch before
  it goes on: a run whose checkpoint holds every epoch is then finished by its final evaluation
  alone. Every process reads the same lines (a line at the checkpoint's step is never set
  aside), so all of them take part in the evaluation or none."""
  epoch = g.position.epochs_done
  if g.position.epoch_step or not epoch or not _evaluated(g.configs[0], epoch):
    return
  step = epoch * spe
  lines = {i: _line_start(g, dirs, i, epoch, step) for i, workdir in enumerate(dirs.workdirs)
           if dirs.live[i] and not any(r["split"] == "test" and r["step"] == step
                                       for r in rundir.read_metrics(workdir))}
  if lines:
    logging.info("Epoch %d has no test line in %s (its evaluation was cut short): evaluating it "
                 "again", epoch, " ".join(dirs.workdirs[i] for i in lines))
    _evaluate(g, runner, dirs, epoch, step, lines)
    for line in lines.values():
      logging.info("%s", line)


# --- The trainer -------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       data_dir: str | None = None, manual_dir: str | None = None,
                       download: bool = True, allow_fallback: bool = False) -> TrainState:
  """Trains (or resumes) the run in `workdir`; returns the final train state."""
  return train_group([config], [workdir], vectorized=False, data_dir=data_dir,
                     manual_dir=manual_dir, download=download, allow_fallback=allow_fallback)


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list[str], *,
                vectorized: bool = True, data_dir: str | None = None,
                manual_dir: str | None = None, download: bool = True,
                allow_fallback: bool = False) -> TrainState:
  """Trains (or resumes) runs that differ only in seed and hparams.FIELDS as one program.

  The state gets a leading run axis and every step is vmapped over it; each run keeps its own
  run directory (config, metrics, checkpoints of its slice), exactly as if trained alone. A run
  that diverges stops alone; the others train to the end, and then Diverged names it.
  `vectorized=False` trains one run without the run axis. Returns the final (stacked) state.
  """
  # Signals are caught from the start, so a SIGTERM during start-up stops at the first call.
  with preemption.PreemptionWatcher() as watcher:
    group.check_group(configs, vectorized)
    with GroupDirs.open(workdirs, configs, jax.device_count()) as dirs:
      layout = group.layout(len(configs), vectorized)
      data = load_data(configs[0], layout.mesh, data_dir, manual_dir, download)
      g = init_group(configs, data, layout)
      start(g, data, dirs, allow_fallback)
      dirs.write_configs()
      runner = build_runner(g, data)
      try:
        _train_epochs(g, runner, dirs, watcher, data.steps_per_epoch)
      finally:
        runner.close()  # Ends grain's worker processes.
      diverged = [w for w, live in zip(workdirs, dirs.live) if not live]
  if diverged:  # Raised once the others' last saves are on disk and everything is released.
    raise Diverged(f"{len(diverged)} of {len(configs)} runs diverged ({', '.join(diverged)}); "
                   f"the others trained to the end")
  return g.state


def _train_epochs(g: Group, runner: Runner, dirs: GroupDirs,
                  watcher: preemption.PreemptionWatcher, spe: int) -> None:
  config, seconds = g.configs[0], []
  evaluate_missing(g, runner, dirs, spe)
  if g.position.epochs_done >= config.num_epochs:
    logging.info("Nothing to do: the checkpoint already holds %d of %d epochs",
                 g.position.epochs_done, config.num_epochs)
  for epoch in range(g.position.epochs_done + 1, config.num_epochs + 1):
    if not any(dirs.live):
      return
    t0 = time.time()
    examples_per_sec = train_epoch(g, runner, dirs, watcher, epoch, spe)
    seconds.append(time.time() - t0)
    end_epoch(g, runner, dirs, watcher, epoch, spe, examples_per_sec,
              eta=np.mean(seconds) * (config.num_epochs - epoch))
