r"""WAE-MMD (Tolstikhin et al., 2018) on MNIST: the paper's 8-d code, N(0, I) prior, lambda = 10
on the IMQ-kernel MMD (C = 2 * 8), squared-error reconstruction, batch 100, Adam at 1e-3, 100
epochs; the 784-512-256 MLP of experiments/mlp_ae.py instead of the paper's DCGAN-style convnet,
so the two files differ only in the code and its regulariser.

  python -m aejax.main --config=experiments/wae.py --workdir=/tmp/wae

Measured (CPU, 2 cores, shared with other jobs), 3 epochs (--config.num_epochs=3): test sq_err
14.24 per image (train MMD 0.0042), 28 s of training, 44 s wall; experiments/mlp_ae.py at the
same epochs, code size and batch (--config.num_epochs=3 --config.model.latents=8
--config.batch_size=100): 14.33, 91 s wall (its cores busier). The MMD to N(0, I) costs no
reconstruction here. The paper's 100 epochs: not run yet.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "wae"
  config.model.hidden = (512, 256)
  config.model.latents = 8
  config.loss = "mse"
  config.objective.mmd_weight = 10.0
  config.batch_size = 100
  config.num_epochs = 100
  return config
