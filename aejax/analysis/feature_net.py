"""The feature network of a dataset: the space sample-quality metrics (sample_quality.py) run in.

Inception features see ImageNet photographs and need weights from the internet; aejax trains its
own network per dataset instead, offline, once, the same way on every host:

- A dataset with labels gets a small conv classifier trained on its own train split: `lenet`
  (LeNet-5-like: 5x5 convs of 16 and 32 channels, each followed by a 2x2 max-pool, then dense
  128 and the classes) for 28x28 images, `allconv` (3x3 convs of 32, 64, 128, 128 channels, the
  last three of stride 2, then a global mean and the classes) for any other size. Adam, a fixed
  seed, no augmentation; its accuracy on the test split is recorded.
- A dataset without labels gets the same architecture randomly initialised and never trained,
  `random_<arch>` (Naeem et al. 2020 show such embeddings track sample quality where ImageNet
  features do not apply); its record says so.

The features of an image are the network's penultimate layer (128 numbers), from its uint8
pixels scaled to [0, 1] under the dataset's crop/resize view. A metric computed in them carries
the network's `name` (e.g. `lenet_mnist`): it is not an Inception FID and is comparable only with
numbers from the same network.

The network is stored beside the prepared dataset,
`<data_dir>/<name>/<version>/aejax_features/<fingerprint>/` (orbax parameters and record.json:
the recipe, the data's identity, the fingerprint, the test accuracy). The fingerprint hashes the
recipe (architecture, optimiser, epochs, batch size, seed, view) and the data's identity (name,
version, split sizes, the SHA-256 of TFDS's dataset_info.json), so a changed recipe or a
dataset prepared afresh is another directory and is trained afresh, never reused; a directory
whose record does not match its name is an error. Training is deterministic on one backend: the
same recipe on the same data gives bitwise the same parameters and features.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax.data import dataset
from aejax.data import views
from aejax import loops
from aejax.errors import UserError
from aejax.run import storage

STORE_DIR = "aejax_features"
RECORD = "record.json"
PARAMS = "params"
FORMAT = 1  # Part of the fingerprint: a change to how networks are built or stored bumps it.
FEATURE_DIM = 128
FEATURE_BATCH = 500  # Images per step of `features`.


class LeNet(nn.Module):
  """LeNet-5-like, for 28x28 images."""
  num_classes: int

  @nn.compact
  def __call__(self, x_BxHxWxC):
    x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="SAME")(x_BxHxWxC)), (2, 2), (2, 2))
    x = nn.max_pool(nn.relu(nn.Conv(32, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
    feats_BxF = nn.relu(nn.Dense(FEATURE_DIM)(x.reshape(x.shape[0], -1)))
    return feats_BxF, nn.Dense(self.num_classes)(feats_BxF)


class AllConv(nn.Module):
  """All-convolutional, for images of any size (32x32x3, 64x64x3, ...)."""
  num_classes: int

  @nn.compact
  def __call__(self, x_BxHxWxC):
    x = x_BxHxWxC
    for channels, stride in ((32, 1), (64, 2), (128, 2), (FEATURE_DIM, 2)):
      x = nn.relu(nn.Conv(channels, (3, 3), strides=stride, padding="SAME")(x))
    feats_BxF = x.mean(axis=(1, 2))
    return feats_BxF, nn.Dense(self.num_classes)(feats_BxF)


ARCHS = {"lenet": LeNet, "allconv": AllConv}


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a feature network is made; every field is part of the fingerprint."""
  arch: str
  trained: bool = True  # False: randomly initialised (a dataset without labels).
  epochs: int = 10
  batch_size: int = 128
  learning_rate: float = 1e-3
  seed: int = 0
  train_examples: int | None = None  # The first n of the train split (None: all of it).
  view: views.View = views.View()

  def as_dict(self) -> dict:
    return {**dataclasses.asdict(self), "optimizer": "adam", "view": {
        "crop": self.view.crop and list(self.view.crop),
        "resize": self.view.resize and list(self.view.resize)}}


def default_recipe(image_shape: tuple[int, ...], labelled: bool,
                   view: views.View = views.View()) -> Recipe:
  """The stored recipe for images of `image_shape` (as the view makes them)."""
  arch = "lenet" if tuple(image_shape[:2]) == (28, 28) else "allconv"
  return Recipe(arch=arch, trained=labelled, view=view)


class FeatureNet:
  """A stored feature network: `features(images)`, the `record` it was stored with and the
  `directory` it is stored in (what is computed once from it may be kept there too)."""

  def __init__(self, model: nn.Module, params, record: dict, directory: str):
    self.record, self.directory = record, directory
    self._params = params
    self._features = jax.jit(lambda p, x: _features_in_batches(model, p, x))

  @property
  def name(self) -> str:
    """Which network and which dataset: e.g. 'lenet_mnist', 'random_allconv_celeb_a'."""
    return self.record["network"]

  @property
  def params(self):
    return self._params

  def features(self, images_NxHxWxC: np.ndarray) -> np.ndarray:
    """The penultimate layer [N, 128] float32 of uint8 images (already in the dataset's view)."""
    images_NxHxWxC = np.asarray(images_NxHxWxC)
    shape = tuple(self.record["image_shape"])
    if images_NxHxWxC.dtype != np.uint8 or images_NxHxWxC.shape[1:] != shape:
      raise UserError(f"the feature network {self.name} takes uint8 images of shape {shape}, "
                      f"got {images_NxHxWxC.dtype} {images_NxHxWxC.shape[1:]}; pass images as "
                      f"the dataset stores them, in its view")
    padded, _ = dataset.pad_to_multiple(images_NxHxWxC, FEATURE_BATCH)
    return np.asarray(self._features(self._params, padded))[:len(images_NxHxWxC)]


def _scaled(images_uint8):
  return images_uint8.astype(jnp.float32) / 255.0


def _features_in_batches(model, params, images_NxHxWxC):
  batches = images_NxHxWxC.reshape(-1, FEATURE_BATCH, *images_NxHxWxC.shape[1:])
  feats = jax.lax.map(lambda x: model.apply(params, _scaled(x))[0], batches)
  return feats.reshape(-1, feats.shape[-1])


# -- Where it is stored, and what identifies it --------------------------------------------------

def data_identity(builder_dir: str) -> dict:
  """Name, version, split sizes and the checksum of TFDS's dataset_info.json."""
  import tensorflow_datasets as tfds

  info = tfds.builder_from_directory(builder_dir).info
  with open(os.path.join(builder_dir, "dataset_info.json"), "rb") as f:
    info_sha256 = hashlib.sha256(f.read()).hexdigest()
  return {"name": info.full_name, "version": str(info.version),
          "splits": {s: info.splits[s].num_examples for s in sorted(info.splits)},
          "dataset_info_sha256": info_sha256}


def fingerprint(recipe: Recipe, data: dict) -> str:
  text = json.dumps({"format": FORMAT, "recipe": recipe.as_dict(), "data": data}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def network_name(recipe: Recipe, dataset_name: str) -> str:
  arch = recipe.arch if recipe.trained else f"random_{recipe.arch}"
  return f"{arch}_{re.sub(r'[^A-Za-z0-9]+', '_', dataset_name).strip('_')}"


# -- Building and loading ------------------------------------------------------------------------

def for_dataset(name: str, data_dir: str | None = None, manual_dir: str | None = None,
                download: bool = False, view: views.View = views.View(),
                recipe: Recipe | None = None, random_embedding: bool = True,
                store_dir: str | None = None) -> FeatureNet:
  """The feature network of dataset `name` (prepared in `data_dir`, from `manual_dir` if not yet),
  loaded from where it is stored, or built and stored there first.

  `recipe` None is the default recipe for the dataset's images. A dataset without labels gets the
  random embedding, unless `random_embedding` is False (then it is a UserError). `store_dir`
  (default `<builder dir>/aejax_features`) is where networks are kept.
  """
  builder_dir = dataset.prepare(name, data_dir, manual_dir, download=download)
  labelled = dataset.has_labels(builder_dir)
  if not labelled and not random_embedding:
    raise UserError(f"dataset {name!r} has no labels to train a feature classifier on; allow "
                    f"the randomly initialised embedding (Naeem et al. 2020) or use a labelled "
                    f"dataset")
  if recipe is None:
    recipe = default_recipe(view.shape(dataset.stored_image_shape(builder_dir)), labelled, view)
  elif recipe.trained and not labelled:
    raise UserError(f"dataset {name!r} has no labels, so its feature network cannot be trained; "
                    f"use a recipe with trained=False (the random embedding)")
  data = data_identity(builder_dir)
  fp = fingerprint(recipe, data)
  directory = os.path.join(store_dir or os.path.join(builder_dir, STORE_DIR), fp)
  if not os.path.exists(directory):
    _build(directory, builder_dir, recipe, data, fp, network_name(recipe, name))
  return _load(directory, recipe, data, fp)


def _model(recipe: Recipe, num_classes: int) -> nn.Module:
  return ARCHS[recipe.arch](num_classes=num_classes)


def _build(directory: str, builder_dir: str, recipe: Recipe, data: dict, fp: str,
           network: str) -> None:
  """Trains (or initialises) the network and stores it under `directory`, written in a
  temporary directory and renamed, so a killed build leaves nothing that looks finished."""
  import orbax.checkpoint as ocp

  if recipe.trained and "test" not in data["splits"]:
    raise UserError(f"{data['name']} has no test split to measure its feature network on; "
                    f"use a dataset with train and test splits")
  train_images, train_labels = dataset.load_split(builder_dir, "train", recipe.view)
  if recipe.train_examples is not None:
    train_images = train_images[:recipe.train_examples]
    train_labels = None if train_labels is None else train_labels[:recipe.train_examples]
  num_classes = dataset.num_classes(builder_dir) or 1
  model = _model(recipe, num_classes)
  params = model.init(jax.random.key(recipe.seed), _scaled(jnp.asarray(train_images[:1])))
  accuracy = None
  if recipe.trained:
    logging.info("Training the feature network %s (%d epochs on %d images)", network,
                 recipe.epochs, len(train_images))
    params = train(model, params, train_images, train_labels, recipe)
    test_images, test_labels = dataset.load_split(builder_dir, "test", recipe.view)
    accuracy = accuracy_of(model, params, test_images, test_labels)
    logging.info("Feature network %s: test accuracy %.4f", network, accuracy)
  record = {"network": network, "fingerprint": fp, "format": FORMAT, "recipe": recipe.as_dict(),
            "data": data, "image_shape": list(train_images.shape[1:]),
            "num_classes": num_classes, "feature_dim": FEATURE_DIM,
            "embedding": ("classifier trained on the train split's labels" if recipe.trained
                          else "randomly initialised, never trained (Naeem et al. 2020)"),
            "test_accuracy": accuracy}
  tmp = storage.temp_path(directory)
  with storage.writing(directory):
    os.makedirs(tmp)
    try:
      with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(tmp, PARAMS), params)
      with open(os.path.join(tmp, RECORD), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
      try:
        os.rename(tmp, directory)
      except OSError:
        if not os.path.exists(os.path.join(directory, RECORD)):
          raise
        # Another process stored the same network first; its copy is identical.
    finally:
      shutil.rmtree(tmp, ignore_errors=True)


def _load(directory: str, recipe: Recipe, data: dict, fp: str) -> FeatureNet:
  import orbax.checkpoint as ocp

  try:
    with open(os.path.join(directory, RECORD)) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"the stored feature network {directory} has no readable {RECORD} ({e}); "
                    f"remove that directory and it is built again") from None
  if (record.get("fingerprint") != fp or record.get("recipe") != recipe.as_dict()
      or record.get("data") != data):
    raise UserError(f"the stored feature network {directory} was made by another recipe or "
                    f"from other data than its name says; remove that directory and it is "
                    f"built again")
  model = _model(recipe, record["num_classes"])
  shape = (1, *record["image_shape"])
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          abstract)
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(os.path.join(directory, PARAMS), abstract)
  return FeatureNet(model, params, record, directory)


# -- Training ------------------------------------------------------------------------------------

def train(model: nn.Module, params, images_NxHxWxC: np.ndarray, labels_N: np.ndarray,
          recipe: Recipe):
  """`recipe.epochs` epochs of Adam on the cross-entropy, the data on the device, each epoch one
  jit call scanning its steps over a permutation drawn from (seed, epoch)."""
  optimizer = optax.adam(recipe.learning_rate)
  steps = len(images_NxHxWxC) // recipe.batch_size
  if steps == 0:
    raise UserError(f"{len(images_NxHxWxC)} train images are fewer than one batch of "
                    f"{recipe.batch_size}")

  def loss(p, x_BxHxWxC, y_B):
    logits_BxK = model.apply(p, _scaled(x_BxHxWxC))[1]
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxK, y_B).mean()

  def step(state, images, labels, perm_N, i):
    p, opt_state = state
    idx_B = jax.lax.dynamic_slice_in_dim(perm_N, i * recipe.batch_size, recipe.batch_size)
    grads = jax.grad(loss)(p, images[idx_B], labels[idx_B])
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  @jax.jit
  def scanned_epoch(state, images, labels, key):
    perm_N = jax.random.permutation(key, images.shape[0])
    return jax.lax.scan(lambda s, i: (step(s, images, labels, perm_N, i), None), state,
                        jnp.arange(steps))[0]

  jit_step = jax.jit(step)

  def host_epoch(state, images, labels, key):
    perm_N = jax.random.permutation(key, images.shape[0])
    for i in range(steps):
      state = jit_step(state, images, labels, perm_N, i)
    return state

  # A conv net's steps in a scan run single-threaded on XLA:CPU (aejax/loops.py): there, a host
  # loop over one jitted step; the same steps on the same batches either way.
  epoch = (host_epoch if loops.resolve("auto", "conv", jax.default_backend()) == "host"
           else scanned_epoch)
  images, labels = jnp.asarray(images_NxHxWxC), jnp.asarray(labels_N)
  state = (params, optimizer.init(params))
  data_key = jax.random.fold_in(jax.random.key(recipe.seed), 1)
  for e in range(recipe.epochs):
    state = epoch(state, images, labels, jax.random.fold_in(data_key, e))
    logging.info("Feature network: epoch %d/%d trained", e + 1, recipe.epochs)
  return state[0]


def accuracy_of(model: nn.Module, params, images_NxHxWxC: np.ndarray,
                  labels_N: np.ndarray) -> float:
  padded, mask_N = dataset.pad_to_multiple(images_NxHxWxC, FEATURE_BATCH)

  @jax.jit
  def predictions(p, x_NxHxWxC):
    batches = x_NxHxWxC.reshape(-1, FEATURE_BATCH, *x_NxHxWxC.shape[1:])
    return jax.lax.map(lambda x: model.apply(p, _scaled(x))[1].argmax(-1), batches).reshape(-1)

  predicted_N = np.asarray(predictions(params, padded))[:len(images_NxHxWxC)]
  return float(np.mean(predicted_N == labels_N))
