"""Restore a trained run for analysis: `aejax.restore(workdir)` -> a model that works on numpy.

    run = aejax.restore("/tmp/vae")             # latest checkpoint; step=N for another
    z = run.encode(images)                       # uint8 [N, H, W, C] or floats in [0, 1]
    x_hat = run.reconstruct(images)              # pixel means in [0, 1]
    x_new = run.sample(64, seed=0)               # families with a prior (a model with `sample`)

The checkpoint is restored onto the devices of this process (a CPU is enough), whatever number
of devices wrote it: the restore target is built from the model's own init shapes here.
"""

import functools
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from aejax.run import checkpoint
from aejax import decoder_dists
from aejax import families
from aejax import optimizers
from aejax import parallel
from aejax.data import dataset
from aejax.data import views
from aejax.run import rundir
from aejax import state as state_lib
from aejax.errors import UserError

# The stored image shape of catalog datasets whose shape TFDS fixes, for restoring a run on a host
# with no prepared copy of its dataset at hand; any other dataset's comes from its prepared copy.
STORED_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "kmnist": (28, 28, 1)}


def load_config(workdir: str) -> ml_collections.ConfigDict:
  if not rundir.is_run(workdir):
    raise UserError(f"--workdir={workdir} has no config.json, so it holds no aejax run; pass "
                    f"the workdir a `python -m aejax.main` run wrote; the existing steps are: none")
  saved = rundir.read_config(workdir)
  # A field added to aejax after the run was saved is read at its default, what the run
  # trained with (rundir.with_added_fields), so the model is rebuilt as it was.
  for path, value in rundir.with_added_fields(rundir.flatten(saved)).items():
    *parents, name = path.split(".")
    node = saved
    for parent in parents:
      node = node.setdefault(parent, {})
    node.setdefault(name, value)
  return ml_collections.ConfigDict(saved)


def _steps_text(steps: list[int]) -> str:
  return ", ".join(map(str, steps)) if steps else "none"


class Restored:
  """A restored run: `config`, `model` (Flax module), `params`, `step`; numpy in, numpy out.

  Every method takes any number of examples and runs them through one compiled function in
  fixed-size batches (the last one padded), so no batch size triggers a new compile.
  """

  def __init__(self, config: ml_collections.ConfigDict, model: Any, params: Any, step: int,
               workdir: str, image_shape: tuple[int, ...], batch_size: int = 500):
    self.config, self.model, self.params, self.step = config, model, params, step
    self.workdir, self.image_shape, self.batch_size = workdir, tuple(image_shape), batch_size
    # What the family reports (aejax.families): a likelihood (and so a posterior), a prior.
    self.has_likelihood = families.of(config).LIKELIHOOD
    self.is_generative = hasattr(model, "sample")
    # No prior, but a mixture fitted to the train codes to sample from (aejax.analyze).
    self.ex_post_components = families.ex_post_components(config)
    # Parameters are arguments, not constants baked into the compiled functions.
    encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode))
    code = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.code))
    dist = decoder_dists.of(config.model)
    decode = jax.jit(lambda p, z: dist.mean(model.apply({"params": p}, z, method=model.decode)))
    self._encode = functools.partial(encode, params)
    self._code = functools.partial(code, params)
    self._decode = functools.partial(decode, params)

  def _images(self, images: np.ndarray) -> np.ndarray:
    """uint8 images are scaled to [0, 1]; float images are taken as already in [0, 1]."""
    images = np.asarray(images)
    if images.shape[1:] != self.image_shape:
      raise UserError(f"images of shape {images.shape} do not fit this model; pass "
                      f"[N, {', '.join(map(str, self.image_shape))}]")
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else (
        images.astype(np.float32))

  def map_batches(self, fn: Callable, x_N: np.ndarray) -> Any:
    """fn over x_N in batches of `batch_size` (the last one padded), as numpy, trimmed to N."""
    padded, _ = dataset.pad_to_multiple(x_N, self.batch_size)
    outs = [jax.device_get(fn(padded[i:i + self.batch_size]))
            for i in range(0, len(padded), self.batch_size)]
    if not outs:  # No examples: empty arrays of the right trailing shape.
      shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((self.batch_size, *x_N.shape[1:]),
                                                        x_N.dtype))
      return jax.tree.map(lambda s: np.zeros((0, *s.shape[1:]), s.dtype), shapes)
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:len(x_N)], *outs)

  def posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, logvar) of q(z|x), each [N, Z]; families with a likelihood only."""
    if not self.has_likelihood:
      raise UserError(f"model {self.config.model.name!r} has a deterministic code, no "
                      f"posterior; use encode()")
    return self.map_batches(self._encode, self._images(images))

  def encode(self, images: np.ndarray) -> np.ndarray:
    """Codes [N, Z]: the AE's code, the mean of a VAE's posterior, a VQ-VAE's quantised code."""
    return self.map_batches(self._code, self._images(images))

  def decode(self, z_NxZ: np.ndarray) -> np.ndarray:
    """Pixel means in [0, 1], [N, *image_shape]: the mean of the decoder's distribution
    (decoder_dists.DecoderDist.mean)."""
    return self.map_batches(self._decode, np.asarray(z_NxZ, np.float32))

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    return self.decode(self.encode(images))

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """n images decoded from codes drawn from the model's prior (its `sample`)."""
    if not self.is_generative:
      raise UserError(f"model {self.config.model.name!r} has no prior to sample from; "
                      f"use a family whose model has one (docs/families.md)")
    z = self.model.apply({"params": self.params}, jax.random.key(seed), n,
                         method=self.model.sample)
    return self.decode(np.asarray(z))


def restore(workdir: str, step: int | None = None, image_shape: tuple[int, ...] | None = None,
            data_dir: str | None = None) -> Restored:
  """The run in `workdir` at checkpoint `step` (default: the latest).

  The model's image shape is the stored shape of the run's dataset, read from its prepared copy
  in `data_dir` (default: $TFDS_DATA_DIR or ~/tensorflow_datasets; for MNIST-like datasets with
  none there, STORED_SHAPES), through the run's config.input.crop/resize; or given as
  `image_shape`.
  """
  config = load_config(workdir)
  steps = rundir.checkpoint_steps(workdir)
  if not steps:
    raise UserError(f"--workdir={workdir} has no checkpoints; the existing steps are: none; "
                    f"train it first with `python -m aejax.main`")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise UserError(f"--step={step} has no checkpoint in {workdir}; the existing steps are: "
                    f"{_steps_text(steps)}")
  if image_shape is None:
    data_dir = data_dir or dataset.default_data_dir()
    stored = (dataset.prepared_image_shape(config.dataset, data_dir)
              or STORED_SHAPES.get(config.dataset))
    if stored is None:
      raise UserError(f"the image shape of dataset {config.dataset!r} comes from its prepared "
                      f"copy, and {data_dir} holds none; pass the --data_dir it was trained from")
    image_shape = views.from_config(config).shape(stored)

  model = families.create_model(config.model, image_shape, config.dtype)
  # Only the optimizer state's structure matters here; any steps_per_epoch gives it.
  tx = optimizers.create_optimizer(config, steps_per_epoch=1)
  # The target: the train state's shapes and dtypes, replicated over this process's devices.
  shapes = jax.eval_shape(functools.partial(state_lib.init_state, image_shape=image_shape,
                                            model=model, tx=tx), jax.random.key(0))
  sharding = parallel.replicated(parallel.make_mesh())
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  try:
    with checkpoint.manager(ckpt_dir, config.checkpoint.max_to_keep, writer=False) as mngr:
      state, _ = checkpoint.restore(mngr, step, like)
  except Exception as e:  # Orbax's many error types; all mean this checkpoint cannot be used.
    detail = " ".join(str(e).split())[:300]
    raise UserError(f"cannot restore step {step} from {ckpt_dir} with the model of "
                    f"{workdir}/config.json ({type(e).__name__}: {detail}); the checkpoint is "
                    f"damaged or was written by another config") from e
  return Restored(config, model, state.params, int(state.step), workdir, image_shape)
