r"""Prepares a folder of your own images as a TFDS dataset that every aejax command reads:

  python -m aejax.prepare_folder --folder=/data/my_images --name=my_images --channels=3
  python -m aejax.main --config=experiments/conv_vae.py --workdir=/tmp/mine \
      --config.dataset=my_images

The folder holds `train/<class>/*.png` and `test/<class>/*.png` (or JPEG), all images of one size;
see aejax/data/image_folder.py. The dataset goes to --data_dir (default: $TFDS_DATA_DIR or
~/tensorflow_datasets), where `--config.dataset=<name>` then finds it.
"""

from absl import app
from absl import flags

from aejax import cli
from aejax.data import dataset
from aejax.data import image_folder

_FOLDER = flags.DEFINE_string("folder", None, "Folder holding train/<class>/ and test/<class>/ "
                              "sub-folders of PNG or JPEG images, all of one size.")
_NAME = flags.DEFINE_string("name", None, "Name of the TFDS dataset to write (config.dataset).")
_CHANNELS = flags.DEFINE_integer("channels", 3, "Channels each image is decoded to: 1 (grey) or "
                                 "3 (RGB).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir to write the dataset to (default: $TFDS_DATA_DIR or "
    "~/tensorflow_datasets), the --data_dir of the commands that then read it.")
flags.mark_flags_as_required(["folder", "name"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; see --help")

  def prepare() -> None:
    builder_dir = image_folder.prepare_folder(_FOLDER.value, _NAME.value,
                                              _DATA_DIR.value or dataset.default_data_dir(),
                                              _CHANNELS.value)
    print(f"Prepared {builder_dir}; train on it with --config.dataset={_NAME.value}"
          + (f" --data_dir={_DATA_DIR.value}" if _DATA_DIR.value else ""))
  cli.run_command(prepare)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
