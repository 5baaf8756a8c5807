r"""784-500-20 MLP VAE (vae.py's model) on Fashion-MNIST (28x28 grey, 10 classes), ELBO, with a
discretised logistic decoder (docs/datasets.md, "Decoders").

  python -m aejax.main --config=experiments/fashion_mnist_vae.py --workdir=/tmp/fashion_vae \
      --config.eval_num_samples=100

Fashion-MNIST's grey levels carry the texture of the garments, so the inputs are not binarised
(binarize='none') and the decoder scores the 256 grey levels: its ELBO and test NLL are
probabilities of the 8-bit images, the NLL also in bits per dimension. Run here on TFDS mock
data only (tests/test_datasets_mock.py: random images of the dataset's real shape and splits;
this host has no internet and only MNIST prepared): no result on the real data is claimed. The
same model on MNIST's grey levels reached 1.674 bits/dim after 480 steps on the CPU
(tests/test_decoder_dists.py).
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.dataset = "fashion_mnist"
  c.input.binarize = "none"
  c.model.decoder_dist = "logistic"
  return c
