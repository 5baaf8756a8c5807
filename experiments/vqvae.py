r"""VQ-VAE: conv encoder (32, 64 channels) -> 64 features cut into 8 vectors of 8, each snapped to
the nearest of 128 codes (straight-through gradient), mirror conv decoder; Bernoulli
cross-entropy on the grey levels, codebook loss and commitment loss (weight 0.25).

  python -m aejax.main --config=experiments/vqvae.py --workdir=/tmp/vqvae \
      --manual_dir=../shared/data/mnist

Lines report `code_perplexity` and `codes_used` (codebook usage per batch).
Not run yet: needs an accelerator (one epoch of the same conv stack as conv_ae.py did not
finish in 15 minutes on this CPU, CPU, 2 cores, shared with other jobs).
"""

from aejax import configs


def get_config():
  config = configs.with_conv(configs.base())
  config.model.name = "vqvae"
  config.model.latents = 64
  config.model.code_dim = 8
  config.model.codebook_size = 128
  config.objective.commitment = 0.25
  config.loss = "bce"
  config.num_epochs = 20
  return config
