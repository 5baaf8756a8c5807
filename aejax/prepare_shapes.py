r"""Renders the dSprites-like shapes dataset offline as a TFDS dataset that every aejax command
reads (aejax/data/shapes.py holds the factors and the rasterisation rule):

  python -m aejax.prepare_shapes --data_dir=/data/tfds
  python -m aejax.prepare_shapes --data_dir=/data/tfds --variant=color --grid=small

The dataset is named for its variant and grid (shapes2d, shapes2d_color, shapes2d_noisy_small,
shapes2d_3x6x10x16x16, ...), which `--config.dataset=<name>` then finds in --data_dir.
"""

from absl import app
from absl import flags

from aejax import cli
from aejax.data import dataset
from aejax.data import shapes

_VARIANT = flags.DEFINE_string(
    "variant", "binary", f"Which images: {', '.join(shapes.VARIANTS)} (binary: white shapes on "
    "black; color: a random colour per image; noisy: white shapes on uniform noise, as "
    "disentanglement_lib's color_dsprites and noisy_dsprites).")
_GRID = flags.DEFINE_string(
    "grid", "full", "Factor grid: full (3 shapes, 6 scales, 40 orientations, 32 x 32 positions: "
    "737,280 images), small (3, 6, 10, 16, 16: 46,080 images), or five counts "
    "'shapes,scales,orientations,x,y', each dividing the full grid's.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the colours and noise of the color and noisy "
                             "variants, drawn once per image.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir to write the dataset to (default: $TFDS_DATA_DIR or "
    "~/tensorflow_datasets), the --data_dir of the commands that then read it.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; see --help")

  def prepare() -> None:
    name, builder_dir = shapes.prepare_shapes(
        _DATA_DIR.value or dataset.default_data_dir(), _VARIANT.value,
        shapes.parse_grid(_GRID.value), _SEED.value)
    print(f"Prepared {builder_dir}; train on it with --config.dataset={name}"
          + (f" --data_dir={_DATA_DIR.value}" if _DATA_DIR.value else ""))
  cli.run_command(prepare)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
