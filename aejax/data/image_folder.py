"""A folder of your own images as a prepared TFDS dataset, read like MNIST from then on.

The folder holds one sub-folder per split, each with one sub-folder per class:
`<folder>/train/<class>/*.png` and `<folder>/test/<class>/*.png` (PNG or JPEG). TFDS's own
`ImageFolder` builder reads and decodes it; the examples are then stored once with
`store_as_tfds_dataset` as ArrayRecord under `<data_dir>/<name>/1.0.0`, so training, analysis,
sweeps and the streaming input find `<name>` in the data dir exactly as they find a TFDS catalog
dataset, and never import TensorFlow to read it. Labels are the class folders' indices in sorted
order of their names (as ImageFolder numbers them).
"""

import os
import re

from absl import logging

from aejax.errors import UserError

VERSION = "1.0.0"
SPLITS = ("train", "test")  # What training (train, test metrics) and analysis read.


def _check_folder(folder: str) -> None:
  if not os.path.isdir(folder):
    raise UserError(f"--folder={folder} is not a directory; pass a folder holding train/ and "
                    f"test/, each with one sub-folder of images per class")
  missing = [s for s in SPLITS if not os.path.isdir(os.path.join(folder, s))]
  if missing:
    raise UserError(f"--folder={folder} has no {' and no '.join(f'{s}/' for s in missing)} "
                    f"sub-folder; put the images in {folder}/train/<class>/ and "
                    f"{folder}/test/<class>/")


def prepare_folder(folder: str, name: str, data_dir: str, channels: int) -> str:
  """Stores the images of `folder` as the TFDS dataset `name` in `data_dir`; returns its
  directory. Every image must have the same height and width; `channels` (1: grey, 3: RGB) is
  what TFDS decodes each image to."""
  _check_folder(folder)
  if channels not in (1, 3):
    raise UserError(f"--channels={channels} must be 1 (grey) or 3 (RGB)")
  if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
    raise UserError(f"--name={name!r} must be a TFDS dataset name: lower case letters, digits "
                    f"and underscores, starting with a letter, e.g. my_images")
  target = os.path.join(data_dir, name, VERSION)
  if os.path.exists(target):
    raise UserError(f"{target} already holds a prepared {name!r}; pass another --name, or "
                    f"remove that folder to prepare it afresh")
  import tensorflow as tf
  import tensorflow_datasets as tfds
  from tensorflow_datasets import dataset_builders

  if name in tfds.list_builders():
    raise UserError(f"--name={name!r} is a dataset of the TFDS catalog; pick another name")

  source = tfds.ImageFolder(folder, shape=(None, None, channels), dtype=tf.uint8)
  split_examples, shape = {}, None
  for split in SPLITS:
    examples = []
    for i, ex in enumerate(tfds.as_numpy(source.as_dataset(split=split, shuffle_files=False))):
      if shape is None:
        shape = ex["image"].shape
      elif ex["image"].shape != shape:
        raise UserError(f"{ex['image/filename'].decode()} is {ex['image'].shape[:2]} pixels, "
                        f"the first image {shape[:2]}; resize the images of {folder} to one "
                        f"size")
      examples.append((i, {"image": ex["image"], "label": ex["label"]}))
    if not examples:
      raise UserError(f"{folder}/{split}/ holds no PNG or JPEG images in class sub-folders")
    split_examples[split] = examples
  classes = source.info.features["label"].names
  features = tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=shape),
      "label": tfds.features.ClassLabel(names=classes)})
  logging.info("Storing %s as TFDS dataset %r in %s: %s images of %s, classes %s", folder, name,
               data_dir, {s: len(e) for s, e in split_examples.items()}, shape, classes)
  builder = dataset_builders.store_as_tfds_dataset(
      name, VERSION, features, split_examples, data_dir=data_dir, file_format="array_record",
      description=f"The images of {os.path.abspath(folder)}, by aejax.prepare_folder.")
  return os.fspath(builder.data_dir)
