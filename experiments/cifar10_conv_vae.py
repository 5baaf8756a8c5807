r"""Convolutional VAE on CIFAR-10 (32x32 RGB, 10 classes): three stride-2 convs (32, 64, 128
channels: 32 -> 16 -> 8 -> 4) -> 128-d Gaussian posterior -> mirror transposed convs, a mixture
of 5 discretised logistics per sub-pixel (docs/datasets.md, "Decoders"), ELBO.

  python -m aejax.main --config=experiments/cifar10_conv_vae.py --workdir=/tmp/cifar10_vae \
      --config.eval_num_samples=100

The inputs are the colour levels in [0, 1], not binarised; the decoder's likelihood is a
probability of the 8-bit images, so the test NLL (with eval_num_samples) in bits per dimension
(`nll_bits_per_dim`) compares with published 8-bit results. The 50,000 training images (154 MB as
uint8) fit on the devices (input_mode='device'). Run here on TFDS mock data only
(tests/test_datasets_mock.py: random images of the dataset's real shape and splits; this host
has no internet and only MNIST prepared): no result on the real data is claimed.
"""

from aejax import configs


def get_config():
  c = configs.with_conv(configs.mlp_vae(latents=128))
  c.dataset = "cifar10"
  c.model.channels = (32, 64, 128)
  c.input.binarize = "none"
  c.model.decoder_dist = "logistic"
  c.model.decoder_components = 5
  return c
