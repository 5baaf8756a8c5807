"""A TFDS image dataset (MNIST, CIFAR-10, CelebA, ...; docs/datasets.md) from TFDS: prepare once, then read as uint8 arrays.

Preparing uses TFDS's own builder, which imports TensorFlow; reading uses only the prepared
ArrayRecord files (`tfds.builder_from_directory(...).as_data_source`), so the training path never
imports TensorFlow. TFDS downloads a dataset that is not prepared, as it does by default; hosts
without internet hand it a folder holding the original archives (`manual_dir`), and TFDS verifies
their registered checksums before it prepares anything.
"""

import contextlib
import difflib
import hashlib
import os
import re
import urllib.parse
import zipfile

from absl import logging
import numpy as np

from aejax.data import views
from aejax.errors import UserError
from aejax.run import storage

FILE_FORMAT = "array_record"
# Beside the prepared files: the decoded arrays of each split (load_split).
DECODED_DIR = "decoded_uint8"
DECODED_FORMAT = "npz images uint8 [N, H, W, C], labels int32 [N]; v2"  # Part of the file's key.
# Seconds the download host gets to answer before a host is taken to be offline.
PROBE_TIMEOUT_S = 3


def default_data_dir() -> str:
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _find_prepared(name: str, data_dir: str):
  """The read-only builder of the newest prepared version, or None. Imports no TensorFlow."""
  from tensorflow_datasets.core import read_only_builder
  from tensorflow_datasets.core import registered

  try:
    return read_only_builder.builder_from_files(name, data_dir=data_dir)
  except registered.DatasetNotFoundError:
    return None


def _archives(builder) -> list[str]:
  """The file names of the dataset's original archives, from TFDS's registered checksums."""
  return sorted({info.filename for info in (builder.url_infos or {}).values() if info.filename})


def _check_manual_dir(builder, manual_dir: str) -> None:
  """Checks the archives ourselves first: TFDS would otherwise go to the network for any file
  missing from manual_dir and retry for minutes on a host without internet."""
  if not os.path.isdir(manual_dir):
    raise UserError(f"--manual_dir={manual_dir} is not a directory; pass the folder that "
                    f"holds the original {builder.name} archives")
  missing = [f for f in _archives(builder) if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise UserError(f"--manual_dir={manual_dir} lacks {', '.join(missing)}; put the original "
                    f"{builder.name} archives there")


def _check_reachable(builder) -> None:
  """Fails within seconds when the dataset's download hosts cannot be reached.

  TFDS's downloader sets no timeout and retries: on a host without internet (or behind a proxy
  that does not answer) a download hangs for minutes before failing with a traceback. One HEAD
  request per host, through the same proxy settings `requests` gives TFDS, tells at once.
  """
  import requests

  hosts = {}
  for url in builder.url_infos or {}:
    hosts.setdefault(urllib.parse.urlsplit(url).netloc, url)
  for url in hosts.values():
    try:
      requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=True)
    except requests.RequestException as e:
      archives = ", ".join(_archives(builder))
      raise UserError(
          f"TFDS dataset {builder.name!r} is not prepared and cannot be downloaded ({url}: "
          f"{type(e).__name__}); on a host without internet put its original archives "
          f"({archives}) in a folder and pass it as --manual_dir") from None


def _prepare(name: str, data_dir: str, manual_dir: str | None, download: bool) -> None:
  """Runs TFDS's builder for `name` into `data_dir` (this is where TensorFlow gets imported).

  With `manual_dir` TFDS prepares from the archives there; otherwise it downloads them, as TFDS
  does by default, after a quick check that their host answers."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import registered

  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format=FILE_FORMAT)
  except registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(), n=1)
    raise UserError(f"config.dataset={name!r} is neither a dataset of the TFDS catalog"
                    f"{f' (did you mean {close[0]!r}?)' if close else ''} nor prepared in "
                    f"{data_dir}; for a folder of your own images run python -m "
                    f"aejax.prepare_folder first") from None
  if manual_dir is not None:
    _check_manual_dir(builder, manual_dir)
  elif not download:
    raise UserError(f"TFDS dataset {name!r} is not prepared in {data_dir} and --nodownload "
                    f"forbids downloading it; drop --nodownload, or pass --manual_dir=<folder "
                    f"with the original archives: {', '.join(_archives(builder))}>")
  else:
    _check_reachable(builder)
  logging.info("Preparing TFDS %r in %s (%s)", name, data_dir,
               f"from the archives in {manual_dir}" if manual_dir else "downloading it")
  # No manual_dir: no DownloadConfig at all, so TFDS downloads exactly as `tfds.load` would.
  config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
  try:
    builder.download_and_prepare(download_config=config)
  except tfds.download.download_manager.NonMatchingChecksumError as e:
    raise UserError(f"an archive of {name!r} does not match TFDS's registered checksum "
                    f"({str(e).splitlines()[0]}); replace it with the original file"
                    f"{f' in --manual_dir={manual_dir}' if manual_dir else ''}") from e


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None,
            download: bool = True) -> str:
  """Makes sure `name` is prepared as ArrayRecord in `data_dir`; returns the builder's directory.

  A dataset that is not prepared yet is prepared from the archives in `manual_dir` when given,
  else downloaded by TFDS (unless `download` is False). A host without internet fails within
  seconds, in one line naming --manual_dir and the archives it needs.
  """
  data_dir = data_dir or default_data_dir()
  builder = _find_prepared(name, data_dir)
  if builder is None:
    _prepare(name, data_dir, manual_dir, download)
    builder = _find_prepared(name, data_dir)
  if builder is None:  # TFDS claimed success but left nothing readable behind.
    raise UserError(f"TFDS did not leave a prepared {name!r} in {data_dir}")
  if builder.info.file_format.value != FILE_FORMAT:
    raise UserError(f"{builder.data_dir} holds {name!r} as {builder.info.file_format.value}, "
                    f"but aejax reads {FILE_FORMAT}; pass another --data_dir to prepare it afresh")
  return builder.data_dir


def prepared_image_shape(name: str, data_dir: str) -> tuple[int, ...] | None:
  """The stored image shape of the prepared dataset `name` in `data_dir`, from its metadata (no
  TensorFlow), or None when `data_dir` holds no prepared copy."""
  builder = _find_prepared(name, data_dir)
  return None if builder is None else tuple(builder.info.features["image"].shape)


def stored_image_shape(builder_dir: str) -> tuple[int, ...]:
  """The shape (H, W, C) the prepared dataset stores its images in, from its metadata."""
  import tensorflow_datasets as tfds

  return tuple(tfds.builder_from_directory(builder_dir).info.features["image"].shape)


def has_labels(builder_dir: str) -> bool:
  """Whether the dataset has a class `label` feature (CelebA has attributes instead; a folder or
  dataset of your own may have none)."""
  import tensorflow_datasets as tfds

  return "label" in tfds.builder_from_directory(builder_dir).info.features


def split_bytes(builder_dir: str, split: str, image_shape: tuple[int, ...]) -> int:
  """Bytes of `split` held as uint8 images of `image_shape` (the model's), from the metadata."""
  return num_examples(builder_dir, split) * int(np.prod(image_shape))


def num_examples(builder_dir: str, split: str, field: str = "split") -> int:
  """From the dataset's metadata, without reading any example; a split TFDS cannot read is a
  UserError naming `field` (the config field that gave it)."""
  import tensorflow_datasets as tfds

  info = tfds.builder_from_directory(builder_dir).info
  try:
    count = info.splits[split].num_examples
  except (ValueError, KeyError, AssertionError) as e:
    raise UserError(f"{field}={split!r} is no split of {info.name} ({' '.join(str(e).split())}); "
                    f"use one of {sorted(info.splits)} or a TFDS slice such as "
                    f"'train[:90%]'") from None
  if count == 0:
    raise UserError(f"{field}={split!r} holds no examples of {info.name}; widen the slice")
  return count


def load_split(builder_dir: str, split: str, view: views.View = views.View(),
               chunk: int = 10_000) -> tuple[np.ndarray, np.ndarray | None]:
  """All of `split` as (images uint8 [N, H, W, C], labels int32 [N]) host arrays, the images as
  `view` makes them (config.input.crop/resize); labels are None for a dataset without a `label`
  feature.

  TFDS decodes every image in Python (MNIST's 60,000 PNGs: about 6 s on one CPU core, paid by
  every process of every run), so the decoded arrays are kept beside the prepared files and later
  calls read them back (well under a second). Images are decoded and viewed `chunk` at a time, so
  a split of large images is never held whole at its stored size.
  """
  import tensorflow_datasets as tfds

  builder = tfds.builder_from_directory(builder_dir)
  # A data dir in a bucket (gs://...) is read through TFDS each time: no local copy to keep.
  cache = None if "://" in os.fspath(builder_dir) else _decoded_cache_path(builder, split, view)
  if cache:
    storage.remove_killed_temps(os.path.dirname(cache))
    try:
      with np.load(cache) as arrays:
        images_NxHxWxC, labels_N = arrays["images"], arrays["labels"]
      if problem := _mismatch(builder, split, view, images_NxHxWxC, labels_N):
        raise ValueError(problem)
      return images_NxHxWxC, (labels_N if "label" in builder.info.features else None)
    except FileNotFoundError:
      pass
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # Damaged: decode afresh.
      logging.warning("Ignoring the unreadable decoded copy %s (%s); decoding %s again", cache,
                      e, split)
  source = builder.as_data_source(split=split)
  labelled = "label" in builder.info.features
  images, labels = [], []
  for start in range(0, len(source), chunk):
    examples = source.__getitems__(range(start, min(start + chunk, len(source))))
    images.append(view(np.stack([ex["image"] for ex in examples])))
    labels += [ex["label"] for ex in examples] if labelled else []
  images_NxHxWxC = np.concatenate(images) if len(images) > 1 else images[0]
  # No label feature: an empty labels array in the decoded copy, None to the caller.
  labels_N = np.asarray(labels, dtype=np.int32)
  if cache:
    _write_decoded_cache(cache, images_NxHxWxC, labels_N)
  return images_NxHxWxC, (labels_N if labelled else None)


def _mismatch(builder, split: str, view: views.View, images: np.ndarray,
              labels: np.ndarray) -> str | None:
  """What about a decoded copy does not fit the split's metadata (count, shape, dtypes), if any."""
  count = builder.info.splits[split].num_examples
  shape = (count, *view.shape(tuple(builder.info.features["image"].shape)))
  if images.shape != shape or images.dtype != np.uint8:
    return f"images {images.dtype}{list(images.shape)}, the split has uint8{list(shape)}"
  num_labels = count if "label" in builder.info.features else 0
  if labels.shape != (num_labels,) or labels.dtype != np.int32:
    return f"labels {labels.dtype}{list(labels.shape)}, the split has int32[{num_labels}]"
  return None


def _decoded_cache_path(builder, split: str, view: views.View) -> str:
  """`<builder dir>/decoded_uint8/<split>-<key>.npz`, the key a hash of DECODED_FORMAT, the view
  (when on) and the split's prepared files (name, size, mtime), so a split prepared afresh, viewed
  otherwise, or a copy written by another layout of this code, is never read."""
  files = [DECODED_FORMAT, split]  # A slice reads the same files as its split.
  if view:
    files.append(repr(view))
  for path in map(os.fspath, builder.info.splits[split].filepaths):
    st = os.stat(path)
    files.append((os.path.basename(path), st.st_size, st.st_mtime_ns))
  key = hashlib.sha256(repr(files).encode()).hexdigest()[:16]
  name = re.sub(r"[^A-Za-z0-9_.-]", "_", split)
  return os.path.join(os.fspath(builder.data_dir), DECODED_DIR, f"{name}-{key}.npz")


def _write_decoded_cache(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes the decoded split atomically (processes that share the data dir may race; the last
  rename wins with identical contents). A data dir that cannot take it only costs the decoding
  next time, so that is a warning, not an error."""
  tmp = storage.temp_path(path)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "wb") as f:
      np.savez(f, images=images, labels=labels)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("Could not keep the decoded %s in %s (%s; %s there); it will be decoded "
                    "again next time", os.path.basename(path), os.path.dirname(path),
                    e.strerror or e, storage.free_space(os.path.dirname(path)))
    with contextlib.suppress(OSError):
      os.remove(tmp)


def num_classes(builder_dir: str) -> int | None:
  """Classes of the dataset's 'label' feature, from its metadata; None when it has none."""
  import tensorflow_datasets as tfds

  features = tfds.builder_from_directory(builder_dir).info.features
  return features["label"].num_classes if "label" in features else None


def load_labels(builder_dir: str, split: str, chunk: int = 10_000) -> np.ndarray:
  """The labels int32 [N] of `split`, read in chunks so its images are never all held at once
  (nor decoded: only the labels are wanted)."""
  import tensorflow_datasets as tfds

  source = tfds.builder_from_directory(builder_dir).as_data_source(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return np.asarray([ex["label"] for start in range(0, len(source), chunk)
                     for ex in source.__getitems__(range(start, min(start + chunk, len(source))))],
                    dtype=np.int32)


def label_indices(labels_N: np.ndarray, keep: tuple[int, ...] | None) -> np.ndarray:
  """Ascending indices of the examples whose label is in `keep` (None: all of them).

  The training split restricted by config.input.train_labels is these examples in this order,
  in both input modes, so an epoch's permutation picks the same images in either.
  """
  if keep is None:
    return np.arange(len(labels_N))
  return np.flatnonzero(np.isin(labels_N, np.asarray(keep)))


def pad_to_multiple(images: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads the leading axis with zeros to a multiple; the mask marks the real rows."""
  pad = -len(images) % multiple
  mask = np.concatenate([np.ones(len(images), np.float32), np.zeros(pad, np.float32)])
  return np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)]), mask
