r"""Convolutional autoencoder: two stride-2 convs (32, 64 channels) -> 32-d code -> mirror
transposed convs; squared-error loss.

  python -m aejax.main --config=experiments/conv_ae.py --workdir=/tmp/conv_ae \
      --manual_dir=../shared/data/mnist

Not run yet: on this CPU (CPU, 2 cores, shared with other jobs) one epoch of the full-size conv
model did not finish in 15 minutes (XLA's CPU convolutions are slow); it needs an accelerator.
"""

from aejax import configs


def get_config():
  config = configs.with_conv(configs.base())
  config.model.latents = 32
  config.loss = "mse"
  config.num_epochs = 20
  return config
