r"""Sparse autoencoder: 784-512-256 MLP to an over-complete sigmoid code of 256 units whose mean
activation is pulled to 0.05 by the KL sparsity penalty (weight 1); squared-error loss.

  python -m aejax.main --config=experiments/sparse_ae.py --workdir=/tmp/sparse_ae

L1 on the code instead: --config.objective.sparsity_weight=0 --config.objective.l1_code=0.01

Measured (CPU, 2 cores, shared with other jobs): one epoch (--config.num_epochs=1) trains in
13.8 s (51 s for the whole command) to a test sq_err of 20.09 with kl_sparsity 0.151. The 20
epochs: not run yet.
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
