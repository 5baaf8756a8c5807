#!/usr/bin/env bash
# Downloads the wheels aejax needs on a host that has JAX (CUDA), flax, optax, orbax-checkpoint,
# absl-py, numpy, protobuf, pyarrow, etils, pillow, cloudpickle and requests already, but no internet:
# TFDS (read side, no TensorFlow), grain, ml_collections and their small dependencies.
# Seen working: these wheels on a Python 3.12 x86-64 CUDA image read a prepared mnist ArrayRecord
# dir with tfds.data_source, without importing tensorflow.
#   usage: offline_wheels.sh OUT_DIR [PYTHON_VERSION (default 3.12)] [EXTRA_SPEC ...]
#   then, on that host: pip install --no-index --no-deps --target SITE OUT_DIR/*.whl; PYTHONPATH=SITE
# Prepare the dataset where TensorFlow is installed (python -m aejax.main ... --manual_dir) and copy
# the TFDS data dir (mnist/3.0.1/*.array_record*, ~26 MB) along with the wheels.
set -euo pipefail
out=${1:?usage: offline_wheels.sh OUT_DIR [PYTHON_VERSION] [EXTRA_SPEC ...]}
py=${2:-3.12}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
specs=(tensorflow-datasets array_record dm-tree docstring_parser immutabledict importlib_resources
       simple-parsing tensorflow-metadata termcolor toml portpicker grain ml_collections "$@")
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
for s in "${specs[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    "${plat[@]}" -d "$out" "$s"
done
# promise ships no wheel: build its pure-Python one here.
python3 -m pip wheel -q --no-deps promise -w "$out"
ls "$out"
