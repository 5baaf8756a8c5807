"""Streaming input (grain over the TFDS ArrayRecord files) against the device-resident epoch."""

import functools
import json
import os

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import configs
from aejax.data import dataset
from aejax.data import input_pipeline
from aejax import hparams
from aejax import families
from aejax import optimizers
from aejax import parallel
from aejax import epochs as epochs_lib  # `epochs` names the epochs to run here.
from aejax import group
from aejax import train
from aejax import validation
from aejax.state import init_state
from aejax.errors import UserError

BATCH, STEPS = 32, 10  # Two epochs of 10 steps: 20 steps that cross an epoch boundary.


@flax.struct.dataclass
class RecordingState:
  """A stand-in train state whose 'step' writes the batch it is given into a buffer."""
  step: jax.Array
  seen_TxBxHxWxC: jax.Array


def record_step(state, x_B, rng, hp):
  del rng, hp
  seen = jax.lax.dynamic_update_index_in_dim(state.seen_TxBxHxWxC, x_B, state.step, 0)
  return RecordingState(state.step + 1, seen), {"loss": jnp.zeros(()),
                                                "grad_norm": jnp.zeros(())}


def run_device(step_fn, state, images_dev, run, epochs):
  chunk_fn = epochs_lib.make_train_chunk(step_fn, batch_size=BATCH, mesh=parallel.make_mesh())
  metrics = []
  for epoch in epochs:
    state, m = chunk_fn(state, images_dev, epoch, 0, STEPS, run)
    metrics.append(m)
  return state, metrics


def run_stream(step_fn, state, source, run, epochs, num_workers=0):
  stream = input_pipeline.StreamEpochs(
      step_fn, source, batch_size=BATCH, steps_per_epoch=STEPS, num_examples=len(source),
      num_epochs=max(epochs), run=run, mesh=parallel.make_mesh(), num_workers=num_workers,
      state=state)
  metrics = []
  for epoch in epochs:
    state, m = stream(state, epoch, 0, STEPS, run)
    metrics.append(m)
  stream.close()
  return state, metrics


@pytest.fixture(scope="module")
def source_and_images(data_dir, mnist):
  builder_dir = dataset.prepare("mnist", data_dir)
  source = input_pipeline.open_source(builder_dir, "train")
  return source, parallel.put_replicated(mnist[0], parallel.make_mesh())


def fresh_recording_state():
  return RecordingState(jnp.zeros((), jnp.int32), jnp.zeros((2 * STEPS, BATCH, 28, 28, 1),
                                                            jnp.uint8))


def test_stream_feeds_the_steps_the_device_paths_batches(source_and_images, mnist):
  source, images_dev = source_and_images
  run = group.run_inputs(configs.base(), 7)
  keys = run["keys"]
  on_device, _ = run_device(record_step, fresh_recording_state(), images_dev, run, (1, 2))
  streamed, _ = run_stream(record_step, fresh_recording_state(), source, run, (1, 2))
  device_seen = np.asarray(on_device.seen_TxBxHxWxC)
  np.testing.assert_array_equal(np.asarray(streamed.seen_TxBxHxWxC), device_seen)
  # Both follow the documented order: epoch e is the permutation drawn from fold_in(data, e).
  perm2 = np.asarray(jax.random.permutation(jax.random.fold_in(keys["data"], 2), 60000))
  np.testing.assert_array_equal(device_seen[STEPS], mnist[0][perm2[:BATCH]])
  assert not np.array_equal(device_seen[0], device_seen[STEPS])  # A new order every epoch.


def test_worker_processes_keep_the_batch_order(source_and_images):
  source, _ = source_and_images
  run = group.run_inputs(configs.base(), 7)
  in_process, _ = run_stream(record_step, fresh_recording_state(), source, run, (1, 2))
  workers, _ = run_stream(record_step, fresh_recording_state(), source, run, (1, 2),
                          num_workers=2)
  np.testing.assert_array_equal(np.asarray(workers.seen_TxBxHxWxC),
                                np.asarray(in_process.seen_TxBxHxWxC))


def test_stream_and_device_train_the_same_parameters(source_and_images):
  source, images_dev = source_and_images
  config = configs.base()
  config.model.name, config.loss, config.input.binarize = "vae", "elbo", "dynamic"
  config.model.hidden, config.model.latents = (64,), 8
  model = families.create_model(config.model, (28, 28, 1))
  tx = optimizers.for_runs(config)
  run = group.run_inputs(config, 3)
  init = lambda: init_state(run["keys"]["init"], (28, 28, 1), model=model, tx=tx(run["hp"]))
  step_fn = functools.partial(train.train_step, hp=hparams.of(config), model=model,
                              tx=optimizers.for_runs(config), config=config)
  on_device, device_metrics = run_device(step_fn, init(), images_dev, run, (1, 2))
  streamed, stream_metrics = run_stream(step_fn, init(), source, run, (1, 2))
  assert int(on_device.step) == int(streamed.step) == 2 * STEPS
  chex.assert_trees_all_close(streamed.params, on_device.params, rtol=1e-6, atol=0)
  chex.assert_trees_all_close(streamed.opt_state, on_device.opt_state, rtol=1e-6, atol=0)
  chex.assert_trees_all_close(stream_metrics, device_metrics, rtol=1e-6)
  # The 20 steps did train: the parameters moved away from their initial values.
  assert not np.allclose(streamed.params["decoder"]["Dense_1"]["bias"],
                         init().params["decoder"]["Dense_1"]["bias"])


def test_train_and_evaluate_stream_mode_matches_device_mode(data_dir, tmp_path):
  def run(mode):
    config = configs.base()
    config.model.hidden, config.model.latents = (32,), 4
    config.batch_size, config.num_epochs, config.eval_batch_size = 2000, 1, 2000
    config.input_mode, config.input_workers = mode, 0
    workdir = str(tmp_path / mode)
    state = train.train_and_evaluate(config, workdir, data_dir=data_dir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    return state, {(r["split"], k): v for r in records for k, v in r.items()
                   if k not in ("split", "examples_per_sec", "time")}

  device_state, device = run("device")
  stream_state, stream = run("stream")
  assert int(stream_state.step) == 30 and ("test", "loss") in stream
  assert stream.keys() == device.keys()
  for k in device:
    np.testing.assert_allclose(stream[k], device[k], rtol=1e-6, err_msg=str(k))
  chex.assert_trees_all_close(stream_state.params, device_state.params, rtol=1e-6, atol=0)


def test_bad_input_settings_are_user_errors():
  config = configs.base()
  config.input_mode = "disk"
  with pytest.raises(UserError, match="input_mode"):
    validation.validate_config(config, 1)
  config = configs.base()
  config.input_workers = -1
  with pytest.raises(UserError, match="input_workers"):
    validation.validate_config(config, 1)
