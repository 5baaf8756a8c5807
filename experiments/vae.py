r"""784-500-20 MLP VAE (the shape of the Flax VAE example), Bernoulli decoder, ELBO.

  python -m aejax.main --config=experiments/vae.py --workdir=/tmp/vae

Result (measured, CPU with 2 cores): test ELBO -99.13 nats per image after the 30 epochs
(dynamically binarised MNIST; reconstruction 71.81, KL 27.32), 98 s from the first epoch to the
last test line; -117.40, -111.23, -107.81 after epochs 1-3 (--config.num_epochs=3).
"""

from aejax import configs


def get_config():
  return configs.mlp_vae()
