r"""784-512-256-32 MLP autoencoder, squared-error loss.

  python -m aejax.main --config=experiments/mlp_ae.py --workdir=/tmp/mlp_ae \
      --manual_dir=../shared/data/mnist

Result: see the README's experiments table.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "ae"
  config.model.hidden = (512, 256)
  config.model.latents = 32
  config.loss = "mse"
  config.num_epochs = 20
  return config
