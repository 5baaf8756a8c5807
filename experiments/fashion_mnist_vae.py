r"""784-500-20 MLP VAE (vae.py's model) on Fashion-MNIST (28x28 grey, 10 classes), ELBO.

  python -m aejax.main --config=experiments/fashion_mnist_vae.py --workdir=/tmp/fashion_vae

Fashion-MNIST's grey levels carry the texture of the garments, so the inputs are not binarised
(binarize='none'); the decoder stays Bernoulli on grey levels in [0, 1] (cross-entropy against
the grey level), as the Gaussian and logistic decoders are not in yet, so its ELBO is no
likelihood of the 8-bit images. Run here on TFDS mock data only (tests/test_datasets_mock.py:
random images of the dataset's real shape and splits; this host has no internet and only MNIST
prepared): no result on the real data is claimed.
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.dataset = "fashion_mnist"
  c.input.binarize = "none"
  return c
