r"""Throughput of aejax's loop beside a per-step baseline, in one process.

  python -m aejax.bench --experiment=vae --batch_sizes=128,1024,8192 [--json] [--steps=2000]
  python -m aejax.bench --experiment=vae --batch_sizes=128 --modes=device,peer --rounds=3

Per batch size (and dtype) it times, after a warm-up and up to `block_until_ready`:
  baseline  the usual loop (as in the Flax VAE example): a host-side permutation, a numpy batch
            gathered on the host per step and fed to the jitted step, a key split on the host;
  device    aejax's device-resident epoch (`epochs.make_train_chunk`): one call per epoch, its
            steps run as config.loop chooses for this backend and model (`loop` in the row);
  peer      the loop a JAX user writes by hand for the same VAE (aejax/minimal_loop.py): one
            lax.scan per epoch (a host loop over one compiled step where device runs one), no
            aejax code in the step; `ratio_to_peer` is device over peer;
  stream    aejax's streaming epoch (`input_pipeline.StreamEpochs`): grain reads and decodes
            each batch from the prepared TFDS files.
  group     with --replicas=1,8,32: a vectorised group (`train.train_group`'s program) of G
            runs, the device epoch vmapped over a leading run axis; examples/s is the aggregate
            over the G runs, `ratio_to_one_run` compares it with the device row (one run).
All but the peer run the same pure `train.train_step` (same model, loss and optimizer). With
--rounds=N, baseline, device and peer are each timed N times, alternating, one row per round.
Each row gives examples/s, the ratios to the baseline and to the peer of the same batch size,
dtype and round, compile time, and the achieved FLOP/s from the FLOPs of one compiled step (XLA's
cost analysis where the backend reports it, else an analytic count of the dense layers;
`flops_source` says which).
"""

import contextlib
import functools
import json
import math
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from aejax import cli
from aejax import configs
from aejax import group
from aejax.data import data_flags  # --data_dir, --manual_dir, --download.
from aejax.data import dataset
from aejax.data import views
from aejax.data import input_pipeline
from aejax import families
from aejax import loops
from aejax import minimal_loop
from aejax import models
from aejax import optimizers
from aejax import parallel
from aejax import epochs as epochs_lib  # `epochs` counts epochs here.
from aejax import hparams
from aejax import train
from aejax import validation
from aejax.errors import UserError

MODES = ("baseline", "device", "peer", "stream")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_EXPERIMENT = flags.DEFINE_string("experiment", "vae", "Name of a file in experiments/.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["128", "1024", "8192"], "Global batch sizes.")
_MODES = flags.DEFINE_list("modes", ["baseline", "device", "stream"],
                           f"Which of {MODES} to time ('peer': a VAE on the ELBO only).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes: float32, bfloat16.")
_STEPS = flags.DEFINE_integer(
    "steps", 500, "Timed steps of baseline and device, rounded up to whole epochs.")
_STREAM_EPOCHS = flags.DEFINE_integer(
    "stream_epochs", 1, "Timed epochs of stream (after one warm-up epoch): it is bounded by "
    "decoding on the host, so fewer examples suffice.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Use the first N training images (0: all).")
_INPUT_WORKERS = flags.DEFINE_integer("input_workers", None,
                                      "grain workers for stream (default: the experiment's).")
_TRACE_DIR = flags.DEFINE_string(
    "trace_dir", None, "Write a jax.profiler trace (with a Perfetto JSON) of each timed device "
    "and baseline run under this folder, to see what limits them.")
_REPLICAS = flags.DEFINE_list(
    "replicas", [], "Group sizes G to time as vectorised groups (the 'group' rows), e.g. 1,8,32.")
_LOOP = flags.DEFINE_string("loop", None, f"config.loop for device, one of {loops.LOOPS} "
                            "(default: the experiment's).")
_CONV_IMPL = flags.DEFINE_string("conv_impl", None, "config.model.conv_impl, one of "
                                 f"{models.CONV_IMPLS} (default: the experiment's).")
_GROUP_RUNS = flags.DEFINE_string("group_runs", None, "config.group_runs of the 'group' rows, "
                                  f"one of {loops.GROUP_RUNS} (default: the experiment's).")
_PEER_LOOP = flags.DEFINE_enum(
    "peer_loop", None, ["scan", "host"], "How the peer runs an epoch's steps (default: as the "
    "device mode does: a host loop for a conv model on CPU, else one lax.scan).")
_ROUNDS = flags.DEFINE_integer(
    "rounds", 1, "Times baseline, device and peer are each timed, alternating (one row each).")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per line instead of a table.")


def load_experiment(name: str):
  path = os.path.join(REPO, "experiments", f"{name}.py")
  if not os.path.exists(path):
    known = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments"))
                   if f.endswith(".py"))
    raise UserError(f"--experiment={name} names no file experiments/{name}.py; use one of {known}")
  return configs.load_experiment(path)


def step_flops(compiled, params, batch_size: int) -> tuple[float, str]:
  """FLOPs of one train step: XLA's count when the backend gives one, else the dense layers'."""
  try:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per computation.
      analysis = analysis[0] if analysis else None
    if analysis and analysis.get("flops", 0) > 0:
      return float(analysis["flops"]), "xla_cost_analysis"
  except Exception:  # Some backends do not implement cost analysis; fall back, and say so.
    pass
  # A dense layer costs 2*in*out FLOPs per example forward and twice that backward.
  weights = sum(p.size for p in jax.tree.leaves(params) if p.ndim == 2)
  return 6.0 * weights * batch_size, "analytic_dense_6x"


def timed(fn, trace_name: str | None = None) -> tuple[float, object]:
  trace = contextlib.nullcontext()
  if _TRACE_DIR.value and trace_name:
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # Device and runtime activity only: a small trace.
    trace = jax.profiler.trace(os.path.join(_TRACE_DIR.value, trace_name),
                               create_perfetto_trace=True, profiler_options=options)
  with trace:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    seconds = time.perf_counter() - t0
  return seconds, out


def device_epochs(step_fn, layout: group.Layout, run, state, images: np.ndarray, *,
                  batch_size: int, loop: str, epochs: int, spe: int, trace_name: str,
                  group_runs: str = "vmap"):
  """(compile seconds, timer): `timer()` gives the seconds of `epochs` device-resident epochs
  (one call each) of the run or group in `layout`; one warm-up epoch has run."""
  images_dev = parallel.put_replicated(images, layout.mesh)
  t0 = time.perf_counter()
  epoch_fn = epochs_lib.make_train_chunk(step_fn, batch_size=batch_size, mesh=layout.mesh,
                                         loop=loop, vectorized=layout.vectorized,
                                         group_runs=group_runs, run_sharded=layout.run_sharded)
  epoch_fn = epoch_fn.lower(state, images_dev, 0, 0, spe, run).compile()
  compile_s = time.perf_counter() - t0
  state, _ = jax.block_until_ready(epoch_fn(state, images_dev, 0, 0, run))  # Warm-up.

  held = [state]  # The epoch donates its state: each timing continues from the last one's.

  def run_epochs():
    state = held[0]
    for epoch in range(1, epochs + 1):
      state, metrics = epoch_fn(state, images_dev, epoch, 0, run)
    held[0] = state
    return state, metrics

  return compile_s, lambda: timed(run_epochs, trace_name)[0]


def peer_epochs(config, model, images: np.ndarray, *, batch_size: int, loop: str, epochs: int,
                spe: int, trace_name: str):
  """(compile seconds, timer) of the hand-written loop (aejax/minimal_loop.py), as
  device_epochs; `loop`: 'scan', or 'host' where aejax's device mode runs a host loop."""
  minimal_loop.check(config)
  images_dev = jax.device_put(images)
  init, compile_epoch = minimal_loop.make_epoch(model, config, images_dev, batch_size=batch_size,
                                                steps_per_epoch=spe, loop=loop)
  params, opt_state = jax.block_until_ready(init(jax.random.key(config.seed)))
  key = jax.random.key(config.seed + 1)
  t0 = time.perf_counter()
  epoch = compile_epoch(params, opt_state, key)
  compile_s = time.perf_counter() - t0
  held = list(jax.block_until_ready(epoch(params, opt_state, key))[:2])  # Warm-up.

  def run_epochs():
    for i in range(1, epochs + 1):
      params, opt_state, loss = epoch(*held, jax.random.fold_in(key, i))
      held[:] = params, opt_state
    return held, loss

  return compile_s, lambda: timed(run_epochs, trace_name)[0]


def bench_group(config, images: np.ndarray, *, replicas: list[int], model, image_shape,
                epochs: int, spe: int, row) -> list[dict]:
  """'group' rows: G runs (seeds seed, seed + 1, ...) as one vectorised device epoch, laid out
  and initialised as the trainer does (aejax/group.py)."""
  make_tx = optimizers.for_runs(config, spe)
  step_fn = functools.partial(train.train_step, model=model, tx=make_tx, config=config)
  loop = loops.resolve(config.loop, config.model.encoder, jax.default_backend())
  rows = []
  for g in replicas:
    layout = group.layout(g, vectorized=True)
    run = layout.stack([group.run_inputs(config, config.seed + i, len(images))
                         for i in range(g)])
    state = group.initial_state(layout, run, image_shape=image_shape, model=model,
                                tx=make_tx(hparams.of(config)))
    compile_s, timer = device_epochs(
        step_fn, layout, run, state, images, batch_size=config.batch_size, loop=loop,
        epochs=epochs, spe=spe, trace_name=f"group{g}_b{config.batch_size}",
        group_runs=config.group_runs)
    r = row("group", timer(), epochs * spe * g, compile_s)
    r["replicas"], r["loop"], r["group_runs"] = g, loop, config.group_runs
    rows.append(r)
  return rows


def bench_one(config, images: np.ndarray, source, *, modes, steps: int, stream_epochs: int,
              replicas: list[int] = (), rounds: int = 1):
  """Rows (dicts) for one config (batch size, dtype): each requested mode, baseline first.

  baseline, device and peer are compiled once, then timed `rounds` times, alternating (round r
  runs them in the order of `modes`, reversed in odd rounds), so a load that drifts over the run
  falls on each of them alike; each row's ratios compare it with the same round's rows."""
  batch_size, num_train = config.batch_size, len(images)
  validation.validate_config(config, jax.device_count())
  validation.validate_data(config, num_train)
  image_shape = images.shape[1:]
  spe = num_train // batch_size  # Steps per epoch, as in the trainer.
  epochs = math.ceil(steps / spe)
  layout = group.layout(1, vectorized=False)  # One run, as aejax.main trains it.
  mesh = layout.mesh
  model = families.create_model(config.model, image_shape, config.dtype)
  make_tx = optimizers.for_runs(config, spe)  # spe: schedules count in steps.
  run = layout.stack([group.run_inputs(config, num_train=num_train)])
  keys = run["keys"]
  fresh_state = lambda: group.initial_state(layout, run, image_shape=image_shape, model=model,
                                            tx=make_tx(hparams.of(config)))
  step_fn = functools.partial(train.train_step, model=model, tx=make_tx, config=config)
  x_spec = jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.uint8)
  # The baseline's step, compiled first so its compile time is not a cache hit.
  t0 = time.perf_counter()
  jit_step = jax.jit(step_fn).lower(fresh_state(), x_spec, keys["train"], hp=run["hp"]).compile()
  step_compile_s = time.perf_counter() - t0
  flops, flops_source = step_flops(jit_step, fresh_state().params, batch_size)
  suffix = f"b{batch_size}_{config.dtype}"
  rows = []

  def row(mode, seconds, timed_steps, compile_s):
    eps = timed_steps * batch_size / seconds
    return {"mode": mode, "batch_size": batch_size, "dtype": config.dtype,
            "examples_per_sec": eps, "ratio_to_baseline": None, "compile_s": compile_s,
            "timed_steps": timed_steps, "seconds": seconds, "flops_per_step": flops,
            "flops_source": flops_source, "flops_per_sec": flops * timed_steps / seconds,
            "num_train": num_train, "device_kind": jax.devices()[0].device_kind,
            "devices": jax.device_count(), "conv_impl": config.model.conv_impl}

  timers = {}  # mode -> (compile seconds, timer() -> seconds, extra row fields)
  if "baseline" in modes:
    state = fresh_state()
    host_rng = np.random.default_rng(config.seed)

    def run_baseline(state, num_steps):
      rng = keys["train"]
      for i in range(num_steps):
        if i % spe == 0:
          perm = host_rng.permutation(num_train)
        j = i % spe
        x_B = images[perm[j * batch_size:(j + 1) * batch_size]]
        rng, step_rng = jax.random.split(rng)
        state, _ = jit_step(state, x_B, step_rng, hp=run["hp"])
      return state

    state = jax.block_until_ready(run_baseline(state, min(spe, 10)))  # Warm-up.
    timers["baseline"] = (step_compile_s, lambda: timed(
        lambda: run_baseline(state, epochs * spe), f"baseline_{suffix}")[0], {})
  if "device" in modes:
    loop = loops.resolve(config.loop, config.model.encoder, jax.default_backend())
    compile_s, timer = device_epochs(step_fn, layout, run, fresh_state(), images,
                                     batch_size=batch_size, loop=loop, epochs=epochs, spe=spe,
                                     trace_name=f"device_{suffix}")
    timers["device"] = (compile_s, timer, {"loop": loop})
  if "peer" in modes:
    # The peer runs its steps as aejax's device mode does ('host': a conv model on CPU, where a
    # scan's convolutions are single-threaded loops; aejax/loops.py), unless --peer_loop says.
    loop = _PEER_LOOP.value or ("host" if loops.resolve(config.loop, config.model.encoder,
                                                        jax.default_backend()) == "host"
                                else "scan")
    compile_s, timer = peer_epochs(config, model, images, batch_size=batch_size, loop=loop,
                                   epochs=epochs, spe=spe, trace_name=f"peer_{suffix}")
    timers["peer"] = (compile_s, timer, {"loop": loop})
  order = [m for m in modes if m in timers]
  for r in range(rounds):
    timed_rows = {}
    for mode in order if r % 2 == 0 else order[::-1]:
      compile_s, timer, extra = timers[mode]
      timed_rows[mode] = {**row(mode, timer(), epochs * spe, compile_s), **extra, "round": r}
    for mode, key in (("baseline", "ratio_to_baseline"), ("peer", "ratio_to_peer")):
      if mode in timed_rows:
        for t in timed_rows.values():
          t[key] = t["examples_per_sec"] / timed_rows[mode]["examples_per_sec"]
    rows.extend(timed_rows[m] for m in order)

  if "stream" in modes:
    state = fresh_state()
    t0 = time.perf_counter()
    stream = input_pipeline.StreamEpochs(
        step_fn, source, batch_size=batch_size, steps_per_epoch=spe, num_examples=num_train,
        num_epochs=1 + stream_epochs, run=run, mesh=mesh, num_workers=config.input_workers,
        state=state)
    compile_s = time.perf_counter() - t0
    state, _ = jax.block_until_ready(stream(state, 1, 0, spe, run))  # Warm-up: starts workers.

    def run_stream(state):
      for epoch in range(2, 2 + stream_epochs):
        state, metrics = stream(state, epoch, 0, spe, run)
      return state, metrics

    seconds, _ = timed(lambda: run_stream(state))
    stream.close()
    rows.append(row("stream", seconds, stream_epochs * spe, compile_s))

  if replicas:
    rows.extend(bench_group(config, images, replicas=replicas, model=model,
                            image_shape=image_shape, epochs=epochs, spe=spe, row=row))
    one = next((r["examples_per_sec"] for r in rows if r["mode"] == "device"), None)
    for r in rows:
      if r["mode"] == "group":
        r["ratio_to_one_run"] = r["examples_per_sec"] / one if one else None
  base = next((r["examples_per_sec"] for r in rows if r["mode"] == "baseline"), None)
  for r in rows:
    if r["mode"] in ("stream", "group"):
      r["ratio_to_baseline"] = r["examples_per_sec"] / base if base else None
  return rows


def format_row(r: dict) -> str:
  ratio = lambda key: f"{r[key]:.2f}x" if r.get(key) else "-"
  mode = f"group{r['replicas']}" if r["mode"] == "group" else r["mode"]
  if r.get("ratio_to_one_run"):
    mode += f" ({r['ratio_to_one_run']:.1f}x one run)"
  return (f"{mode:<9} {r['batch_size']:>6} {r['dtype']:<9} {r['examples_per_sec']:>14,.0f} "
          f"{ratio('ratio_to_baseline'):>8} {ratio('ratio_to_peer'):>8} {r['compile_s']:>9.2f} "
          f"{r['flops_per_sec'] / 1e9:>10.1f} ({r['flops_source']})"
          + (f" loop={r['loop']}" if r.get("loop") else "")
          + (f" group_runs={r['group_runs']}" if r.get("group_runs") else "")
          + (f" round={r['round']}" if r.get("round") else ""))


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; see --help")
  cli.run_command(run)


def run():
  modes = _MODES.value
  if bad := [m for m in modes if m not in MODES]:
    raise UserError(f"--modes names {bad}; use some of {MODES}")
  try:
    batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  except ValueError:
    raise UserError(f"--batch_sizes={','.join(_BATCH_SIZES.value)} must be integers, "
                    f"e.g. 128,1024,8192") from None
  try:
    replicas = [int(g) for g in _REPLICAS.value]
  except ValueError:
    raise UserError(f"--replicas={','.join(_REPLICAS.value)} must be integers, e.g. 1,8,32"
                    ) from None
  if any(g < 1 for g in replicas):
    raise UserError(f"--replicas={','.join(_REPLICAS.value)} must be >= 1")
  for flag, choices in ((_LOOP, loops.LOOPS), (_CONV_IMPL, models.CONV_IMPLS)):
    if flag.value is not None and flag.value not in choices:
      raise UserError(f"--{flag.name}={flag.value} is unknown; use one of {choices}")
  if _STEPS.value < 1 or _STREAM_EPOCHS.value < 1 or _ROUNDS.value < 1:
    raise UserError("--steps, --stream_epochs and --rounds must be >= 1")
  base_config = load_experiment(_EXPERIMENT.value)
  builder_dir = dataset.prepare(base_config.dataset, **data_flags.values())
  view = views.from_config(base_config)  # The experiment's crop and resize, as training's.
  images, _ = dataset.load_split(builder_dir, base_config.input.train_split, view)
  if _NUM_TRAIN.value:
    images = images[:_NUM_TRAIN.value]
  source = (input_pipeline.open_source(builder_dir, base_config.input.train_split, view)
            if "stream" in modes else None)
  if not _JSON.value:
    print(f"{_EXPERIMENT.value} on {jax.device_count()} x {jax.devices()[0].device_kind}, "
          f"{len(images)} training images")
    print(f"{'mode':<9} {'batch':>6} {'dtype':<9} {'examples/s':>14} {'vs base':>8} "
          f"{'vs peer':>8} {'compile s':>9} {'GFLOP/s':>10}")
  for dtype in _DTYPES.value:
    for batch_size in batch_sizes:
      config = base_config.copy_and_resolve_references()
      config.batch_size, config.dtype = batch_size, dtype
      if _INPUT_WORKERS.value is not None:
        config.input_workers = _INPUT_WORKERS.value
      if _LOOP.value is not None:
        config.loop = _LOOP.value
      if _CONV_IMPL.value is not None:
        config.model.conv_impl = _CONV_IMPL.value
      if _GROUP_RUNS.value is not None:
        config.group_runs = _GROUP_RUNS.value
      for r in bench_one(config, images, source, modes=modes, steps=_STEPS.value,
                         stream_epochs=_STREAM_EPOCHS.value, replicas=replicas,
                         rounds=_ROUNDS.value):
        print(json.dumps({"experiment": _EXPERIMENT.value, **r}) if _JSON.value
              else format_row(r), flush=True)


if __name__ == "__main__":
  app.run(main)
