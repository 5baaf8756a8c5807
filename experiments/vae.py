r"""784-500-20 MLP VAE (the shape of the Flax VAE example), Bernoulli decoder, ELBO.

  python -m aejax.main --config=experiments/vae.py --workdir=/tmp/vae \
      --manual_dir=../shared/data/mnist

Result (measured, CPU with 2 cores shared with other jobs): test ELBO -99.15 nats per image
after the 30 epochs (dynamically binarised MNIST; reconstruction 72.0, KL 27.2), 257 s;
-107.81 after 3 epochs.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "vae"
  config.model.hidden = (500,)
  config.model.latents = 20
  config.loss = "elbo"
  config.input.binarize = "dynamic"
  config.num_epochs = 30
  return config
