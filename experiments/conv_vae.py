r"""Convolutional VAE: two stride-2 convs (32, 64 channels) -> 20-d Gaussian posterior ->
mirror transposed convs, Bernoulli decoder, ELBO; dynamic binarisation.

  python -m aejax.main --config=experiments/conv_vae.py --workdir=/tmp/conv_vae \
      --manual_dir=../shared/data/mnist

Not run yet: needs an accelerator (one epoch of the same conv stack as conv_ae.py did not finish
in 15 minutes on this CPU, CPU, 2 cores, shared with other jobs).
"""

from aejax import configs


def get_config():
  return configs.with_conv(configs.mlp_vae())
