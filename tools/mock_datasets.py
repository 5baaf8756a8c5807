"""`python tools/mock_datasets.py <data_dir> <examples per split>`: prepared TFDS mock copies of
fashion_mnist, cifar10 and celeb_a in <data_dir>, read by aejax as the real ones would be.

`tfds.testing.mock_data` patches the builders of the process it runs in (their `as_data_source`
yields random examples of the dataset's own features), but aejax's commands read prepared
ArrayRecord files from a data dir in processes of their own, which no patch reaches. So the mock
examples are drawn here, under `mock_data`, from each catalog builder's real features, and written
with `store_as_tfds_dataset` under the catalog name and version with the catalog's split names:
`--config.dataset=cifar10 --data_dir=<data_dir>` then finds a prepared copy with the real image
shape, dtype, encoding and label feature (or none, for CelebA). Run as a script so TensorFlow,
which TFDS imports to encode the images, never enters the test process.
"""

import sys

import tensorflow_datasets as tfds
from tensorflow_datasets import dataset_builders

# The catalog's split names of each dataset (TFDS catalog pages); celeb_a has no 'label'.
SPLITS = {"fashion_mnist": ("train", "test"), "cifar10": ("train", "test"),
          "celeb_a": ("train", "validation", "test")}


def main(data_dir: str, num_examples: int) -> None:
  drawn = {}
  with tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE):
    for name, splits in SPLITS.items():
      builder = tfds.builder(name)
      split_examples = {}
      for split in splits:
        source = builder.as_data_source(split=split)
        split_examples[split] = [(i, source[i]) for i in range(num_examples)]
      drawn[name] = (builder.info.features, str(builder.version), split_examples)
  # Outside the mock: it redirects every builder's data dir.
  for name, (features, version, split_examples) in drawn.items():
    dataset_builders.store_as_tfds_dataset(
        name, version, features, split_examples, data_dir=data_dir, file_format="array_record",
        description=f"Random examples of {name}'s features (tfds.testing.mock_data).")


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
