r"""Convolutional VAE on CelebA at 64x64 (the usual centre crop of 140, resized to 64; no class
labels): four stride-2 convs (32, 64, 128, 256 channels: 64 -> 32 -> 16 -> 8 -> 4) -> 128-d
Gaussian posterior -> mirror transposed convs, a mixture of 5 discretised logistics per
sub-pixel (docs/datasets.md, "Decoders"), ELBO.

  python -m aejax.main --config=experiments/celeba_conv_vae.py --workdir=/tmp/celeba_vae

The 162,770 training images are 19 GB as stored (218x178x3) but 2.0 GB at 64x64, so they are
cropped and resized once when the split is first loaded and then kept on the devices
(input_mode='device'); a device with less than 4 GB refuses this in one line and
--config.input_mode=stream reads them through grain instead. The test split is CelebA's
'validation' (19,867 images), kept apart from 'test' for a final number. aejax.analyze leaves out
the class probes (CelebA has attributes, no class label). Run here on TFDS mock data only
(tests/test_datasets_mock.py: random images of the real shape and splits; this host has no
internet and only MNIST prepared): no result on the real data is claimed.
"""

from aejax import configs


def get_config():
  c = configs.with_conv(configs.mlp_vae(latents=128))
  c.dataset = "celeb_a"
  c.input.crop = (140,)
  c.input.resize = (64,)
  c.input.test_split = "validation"
  c.input.binarize = "none"
  c.model.channels = (32, 64, 128, 256)
  c.model.decoder_dist = "logistic"
  c.model.decoder_components = 5
  return c
