"""The data a run or group trains and evaluates on: the prepared TFDS dataset's train split (on
the devices, or a source to stream from disk) and its test split padded to whole evaluation
batches, on the devices. The trainer's second phase (aejax/train.py).
"""

import dataclasses
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from aejax import memory as memory_lib
from aejax import parallel
from aejax import validation
from aejax.data import dataset
from aejax.data import input_pipeline
from aejax.data import views
from aejax.errors import UserError


@dataclasses.dataclass
class Data:
  """The group's data: the train split (on the devices, or a source to stream) and the test
  split padded to whole evaluation batches, on the devices."""
  image_shape: tuple[int, ...]
  num_train: int
  steps_per_epoch: int
  train_images: jax.Array | None  # Device mode: the (restricted) split, replicated.
  train_source: Any  # Stream mode: the ArrayRecord source.
  train_index: np.ndarray | None  # config.input.train_labels' rows of the split (None: all).
  test_images: jax.Array
  test_mask: jax.Array


def prepare_data(config: ml_collections.ConfigDict, data_dir: str | None,
                 manual_dir: str | None, download: bool) -> str:
  """The prepared dataset's directory; only process 0 prepares it, the others wait."""
  if jax.process_index() == 0:
    builder_dir = dataset.prepare(config.dataset, data_dir, manual_dir, download)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("dataset prepared")
    builder_dir = dataset.prepare(config.dataset, data_dir)
  return builder_dir


# Device mode keeps the whole train split on every device; it may take at most this share of the
# smallest device's memory, the rest being the model's, the optimizer's and XLA's.
DEVICE_MEMORY_SHARE = 0.5
def check_fits_devices(config: ml_collections.ConfigDict, num_bytes: int) -> None:
  """Device mode: the train split's `num_bytes` must fit DEVICE_MEMORY_SHARE of device memory."""
  memory, source = memory_lib.device_memory_bytes()
  if num_bytes > DEVICE_MEMORY_SHARE * memory:
    raise UserError(
        f"config.input.train_split={config.input.train_split!r} of {config.dataset} takes "
        f"{num_bytes / 1e9:.2f} GB, more than {DEVICE_MEMORY_SHARE:.0%} of the {memory / 1e9:.2f} "
        f"GB of device memory ({source}) that input_mode='device' may fill; pass "
        f"--config.input_mode=stream to read it from disk batch by batch")


def load_data(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, data_dir: str | None,
              manual_dir: str | None, download: bool) -> Data:
  """Device mode puts the split on the devices once; stream mode reads it per batch.

  Both see the images through config.input.crop/resize (views.py). config.input.train_labels
  restricts the split to train_index, the same examples in the same order in both input modes;
  the test metrics use those labels too. The image shape, the model's fit to it and (device
  mode) the split's size are checked from the metadata before any image is decoded.
  """
  builder_dir = prepare_data(config, data_dir, manual_dir, download)
  train_split, test_split = config.input.train_split, config.input.test_split
  num_train = dataset.num_examples(builder_dir, train_split, "config.input.train_split")
  dataset.num_examples(builder_dir, test_split, "config.input.test_split")
  view = views.from_config(config)
  image_shape = view.shape(dataset.stored_image_shape(builder_dir))
  validation.validate_image_shape(config, image_shape)
  train_labels = config.input.train_labels
  train_index = train_images = train_source = None
  if train_labels is not None:
    if dataset.num_classes(builder_dir) is None:
      raise UserError(f"config.input.train_labels={tuple(train_labels)!r} needs class labels, "
                      f"and {config.dataset} has no label feature; leave train_labels unset")
    validation.validate_train_labels(config, dataset.num_classes(builder_dir))
  if config.input_mode == "stream":
    train_source = input_pipeline.open_source(builder_dir, train_split, view)
    if train_labels is not None:
      train_index = dataset.label_indices(dataset.load_labels(builder_dir, train_split),
                                          train_labels)
  else:  # Every process holds the whole (small) split.
    check_fits_devices(config, dataset.split_bytes(builder_dir, train_split, image_shape))
    train_images, labels_N = dataset.load_split(builder_dir, train_split, view)
    if train_labels is not None:
      train_index = dataset.label_indices(labels_N, train_labels)
      train_images = train_images[train_index]
  if train_index is not None:
    validation.validate_train_labels(config, dataset.num_classes(builder_dir), len(train_index))
    num_train = len(train_index)
  validation.validate_data(config, num_train)
  test_images, test_labels = dataset.load_split(builder_dir, test_split, view)
  if train_labels is not None:
    test_images = test_images[dataset.label_indices(test_labels, train_labels)]
  steps_per_epoch = num_train // config.batch_size  # The remainder waits a permutation.
  logging.info("Data: %d train and %d test images (splits %s, %s) of shape %s (labels: %s); %d "
               "steps per epoch", num_train, len(test_images), train_split, test_split, image_shape,
               "all" if train_labels is None else tuple(train_labels), steps_per_epoch)
  test_images, test_mask = dataset.pad_to_multiple(test_images, config.eval_batch_size)
  return Data(image_shape, num_train, steps_per_epoch,
              None if train_images is None else parallel.put_replicated(train_images, mesh),
              train_source, train_index, parallel.put_replicated(test_images, mesh),
              parallel.put_replicated(test_mask, mesh))
