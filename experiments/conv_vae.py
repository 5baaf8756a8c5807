r"""Convolutional VAE: two stride-2 convs (32, 64 channels) -> 20-d Gaussian posterior ->
mirror transposed convs, Bernoulli decoder, ELBO; dynamic binarisation.

  python -m aejax.main --config=experiments/conv_vae.py --workdir=/tmp/conv_vae \
      --manual_dir=../shared/data/mnist

Result (measured on one NVIDIA H100, 2026-11-26, `bench/gpu_check.sh`, with the strided
convolutions that were then the default): test ELBO -95.57 nats (rec 67.70, KL 27.86) after the 30
epochs (the MLP VAE of vae.py: -99.12), 33.6 s for the whole command. Not trained in full on the
2-core CPU.
"""

from aejax import configs


def get_config():
  return configs.with_conv(configs.mlp_vae())
