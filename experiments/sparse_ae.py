r"""Sparse autoencoder: 784-512-256 MLP to an over-complete sigmoid code of 256 units whose mean
activation is pulled to 0.05 by the KL sparsity penalty (weight 1); squared-error loss.

  python -m aejax.main --config=experiments/sparse_ae.py --workdir=/tmp/sparse_ae \
      --manual_dir=../shared/data/mnist

L1 on the code instead: --config.objective.sparsity_weight=0 --config.objective.l1_code=0.01

Result and time: see the README's zoo table (one row per measured run; "not run yet" otherwise).
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "ae"
  config.model.hidden = (512, 256)
  config.model.latents = 256
  config.model.code_activation = "sigmoid"
  config.objective.sparsity_weight = 1.0
  config.objective.sparsity_target = 0.05
  config.loss = "mse"
  config.num_epochs = 20
  return config
