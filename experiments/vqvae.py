r"""VQ-VAE: conv encoder (32, 64 channels) -> 64 features cut into 8 vectors of 8, each snapped to
the nearest of 128 codes (straight-through gradient), mirror conv decoder; Bernoulli
cross-entropy on the grey levels, codebook loss and commitment loss (weight 0.25).

  python -m aejax.main --config=experiments/vqvae.py --workdir=/tmp/vqvae

Lines report `code_perplexity` and `codes_used` (codebook usage per batch).

Result on the 2-core CPU (2026-11-26, nothing else running): test sq_err 8.41 per image (bce
73.77), code perplexity 120.7 of 128 codes, every code used, after the 20 epochs; 840 s (14 min)
for the whole command, 1,569 training examples/s.
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
