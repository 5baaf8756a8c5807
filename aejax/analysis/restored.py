"""Restore a trained run for analysis: `aejax.restore(workdir)` -> a model that works on numpy.

    run = aejax.restore("/tmp/vae")             # latest checkpoint; step=N for another
    images = run.test_images(100)                # uint8, the run's dataset as analyze reads it
    z = run.encode(images)                       # uint8 [N, H, W, C] or floats in [0, 1]
    x_hat = run.reconstruct(images)              # pixel means in [0, 1]
    x_new = run.sample(64, seed=0)               # families with a prior (a model with `sample`)
    nll = run.nll(images, k=100)                 # nats per image, the way analyze measures it

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
from aejax import likelihood
from aejax import memory
from aejax import optimizers
from aejax import parallel
from aejax import preprocess
from aejax import sampling
from aejax.analysis import batches
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


def analysis_keys(seed: int) -> dict[str, jax.Array]:
  """The keys of analyze's random draws from its --seed: the binarisation of the train and the
  test split ('dynamic') and the NLL's posterior samples; image n of each takes key n of its
  stream (sampling.example_keys), so the first n images get the same draws as the whole split."""
  return dict(zip(("train_input", "test_input", "nll"),
                  jax.random.split(jax.random.key(seed), 3)))


def model_inputs(images: np.ndarray, rng: jax.Array, mode: str) -> np.ndarray:
  """The training path's preprocessing (preprocess.py), applied once to a whole split: uint8
  images scaled to [0, 1] (floats taken as already in [0, 1]), binarised per `mode`."""
  x = (preprocess.to_unit_interval(images) if images.dtype == np.uint8
       else images.astype(np.float32))
  # One key per image, so an image's draw does not depend on which images come with it.
  stream_N = sampling.example_keys(rng, 0, len(images))
  return np.asarray(jax.jit(preprocess.binarize, static_argnums=2)(x, stream_N, mode))


def load_split(config: ml_collections.ConfigDict, builder_dir: str,
               which: str) -> tuple[np.ndarray, np.ndarray | None]:
  """The run's 'train' or 'test' split (config.input.train_split/test_split) as (uint8 images,
  labels), through config.input.crop/resize: the images as the run saw them."""
  # A run saved before the split fields existed trained on 'train' and evaluated on 'test'.
  return dataset.load_split(builder_dir, config.input.get(f"{which}_split", which),
                            views.from_config(config))


def _check_shape(what: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  array = np.asarray(array)
  if array.shape[1:] != shape:
    raise UserError(f"{what} of shape {array.shape} do not fit this model; pass "
                    f"[N, {', '.join(map(str, shape))}]")
  return array


def _check_images(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  images = _check_shape("images", images, shape)
  # Other integers are ambiguous (0-255 or 0/1?), so neither scaled nor taken as they are.
  if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
    raise UserError(f"images of dtype {images.dtype}: pass uint8 grey levels (0-255) or floats "
                    f"in [0, 1]")
  return images


NLL_BATCH = 100  # Images per NLL step.
SAMPLE_CHUNK = 100  # Samples decoded per image at once at most; fewer where the budget requires.


class Restored:
  """A restored run: `config`, `model` (Flax module), `params`, `step`; numpy in, numpy out.

  Every method takes any number of examples and runs them through one compiled function in
  fixed-size batches (the last one padded), so no batch size triggers a new compile.
  """

  def __init__(self, config: ml_collections.ConfigDict, model: Any, params: Any, step: int,
               workdir: str, image_shape: tuple[int, ...], batch_size: int = 500,
               data_dir: str | None = None):
    self.config, self.model, self.params, self.step = config, model, params, step
    self.workdir, self.image_shape, self.batch_size = workdir, tuple(image_shape), batch_size
    self.data_dir = data_dir  # Where test_images/train_images read (None: the default).
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
    self._scores = {}
    self.code_shape = jax.eval_shape(
        self._code, jax.ShapeDtypeStruct((1, *self.image_shape), np.float32)).shape[1:]

  def __repr__(self) -> str:
    tested = [r for r in rundir.read_metrics(self.workdir)
              if r["split"] == "test" and r["step"] <= self.step]
    shown = "no test metrics"
    if tested:
      numbers = {k: v for k, v in tested[-1].items()
                 if k not in ("split", "epoch", "step") and isinstance(v, (int, float))}
      shown = (f"test metrics at step {tested[-1]['step']}: "
               + ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
    return (f"<Restored {self.workdir}: model {self.config.model.name!r} on "
            f"{self.config.dataset!r}, step {self.step}, images {self.image_shape}, codes "
            f"{self.code_shape}; {shown}>")

  def _images(self, images: np.ndarray) -> np.ndarray:
    """uint8 images are scaled to [0, 1]; float images are taken as already in [0, 1]."""
    images = _check_images(images, self.image_shape)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else (
        images.astype(np.float32))

  def map_batches(self, fn: Callable, x_N: np.ndarray) -> Any:
    """fn over x_N in batches of `batch_size` (the last one padded), as numpy, trimmed to N."""
    return batches.map_padded(lambda _, x_B: fn(x_B), (x_N,), self.batch_size)

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
    return self.map_batches(self._decode,
                            _check_shape("codes", z_NxZ, self.code_shape).astype(np.float32))

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    return self.decode(self.encode(images))

  def prior_codes(self, n: int, seed: int = 0) -> np.ndarray:
    """n codes [n, Z] drawn from the model's prior (its `sample`)."""
    if not self.is_generative:
      raise UserError(f"model {self.config.model.name!r} has no prior to sample from; "
                      f"use a family whose model has one (docs/families.md)")
    return np.asarray(self.model.apply({"params": self.params}, jax.random.key(seed), n,
                                       method=self.model.sample))

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """n images decoded from prior_codes(n, seed)."""
    return self.decode(self.prior_codes(n, seed))

  def model_inputs(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The images as analyze gives test images to the model: in [0, 1], binarised as the run
    trained (config.input.binarize; 'dynamic': one fixed Bernoulli sample, image n's from key n
    of analysis_keys(seed)["test_input"])."""
    return model_inputs(_check_images(images, self.image_shape),
                        analysis_keys(seed)["test_input"], self.config.input.binarize)

  def likelihood_scores(self, x: np.ndarray, k: int, rng: jax.Array,
                        budget: tuple[int, str] | None = None) -> dict[str, np.ndarray]:
    """Per-image 'elbo' and importance-sampled 'nll' (nats) of the model's inputs `x`
    (model_inputs) with k posterior samples (likelihood.vae_scores); image n's samples come
    from key n of `rng`'s stream, whatever batch it is in. NLL_BATCH images at a time, at most
    SAMPLE_CHUNK samples of each decoded at once, fewer where they would take more than
    `budget` (bytes, where it comes from; default memory.eval_budget's share of the device)."""
    budget = budget or memory.eval_budget(0, "eval_memory_bytes")
    chunk = likelihood.sample_chunk(self.model, self.params,
                                    jax.ShapeDtypeStruct(x.shape[1:], np.float32), NLL_BATCH, k,
                                    SAMPLE_CHUNK, *budget)
    if (k, chunk) not in self._scores:  # One compiled function each, kept for the next call.
      self._scores[k, chunk] = jax.jit(functools.partial(likelihood.vae_scores, self.model, k=k,
                                                         chunk=chunk))
    fn = self._scores[k, chunk]
    return batches.map_padded(
        lambda i, x_B: fn(self.params, x_B, sampling.example_keys(rng, i, NLL_BATCH)), (x,),
        NLL_BATCH, progress=f"NLL with k={k} in chunks of {chunk} samples: images")

  def nll(self, images: np.ndarray, k: int = 5000, seed: int = 0) -> np.ndarray:
    """Importance-sampled -log p(x) [N] in nats of uint8 images or floats in [0, 1], with k
    posterior samples each, measured as `aejax.analyze --k=k --seed=seed` measures the test
    split (model_inputs, then likelihood_scores): for its first N test images, analyze's nll is
    the mean of this."""
    if not self.has_likelihood:
      raise UserError(f"model {self.config.model.name!r} has no likelihood; nll() needs a "
                      f"family with one (docs/families.md)")
    if k < 1:
      raise UserError(f"k={k} must be >= 1")
    return self.likelihood_scores(self.model_inputs(images, seed), k,
                                  analysis_keys(seed)["nll"])["nll"]

  def _split(self, which: str, n: int | None, data_dir: str | None, manual_dir: str | None,
             download: bool) -> np.ndarray:
    builder_dir = dataset.prepare(self.config.dataset, data_dir or self.data_dir, manual_dir,
                                  download)
    return load_split(self.config, builder_dir, which)[0][:n]

  def test_images(self, n: int | None = None, *, data_dir: str | None = None,
                  manual_dir: str | None = None, download: bool = True) -> np.ndarray:
    """The first n (None: all) uint8 images of the run's test split, as analyze reads them
    (load_split), from the dataset prepared in `data_dir` (default: restore's, else the default
    data dir); `manual_dir` and `download` as the commands' flags, for a dataset not prepared yet."""
    return self._split("test", n, data_dir, manual_dir, download)

  def train_images(self, n: int | None = None, *, data_dir: str | None = None,
                   manual_dir: str | None = None, download: bool = True) -> np.ndarray:
    """The first n (None: all) uint8 images of the run's train split; as test_images."""
    return self._split("train", n, data_dir, manual_dir, download)


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
  return Restored(config, model, state.params, int(state.step), workdir, image_shape,
                  data_dir=data_dir)


PRIOR_DRAWS = 100_000  # Codes drawn from the prior for its quantiles (the manifold's grid).


def prior_quantiles(run: Restored, q_Q: np.ndarray,
                    seed: int) -> tuple[np.ndarray, ...]:
  """Per code dimension, the quantiles q_Q of the model's own prior (its `sample`): N(0, 1)'s
  for a VAE, the mixture's for the VampPrior, p(z1)'s for the hierarchical VAE; estimated from
  PRIOR_DRAWS draws."""
  z_NxZ = np.asarray(run.model.apply({"params": run.params}, jax.random.key(seed), PRIOR_DRAWS,
                                     method=run.model.sample))
  return tuple(np.quantile(z_NxZ, q_Q, axis=0).astype(np.float32).T)
