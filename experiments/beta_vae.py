r"""beta-VAE: 784-500-10 MLP VAE, Bernoulli decoder, KL weighted by beta = 4 after a linear
warm-up from 0 over the first 5000 steps; dynamic binarisation.

  python -m aejax.main --config=experiments/beta_vae.py --workdir=/tmp/beta_vae

Train lines report `kl_weight`; test lines use the final weight. `elbo` is the plain ELBO.
Measured (CPU, 2 cores, shared with other jobs): one epoch (--config.num_epochs=1) trains in 8.0
s (46 s for the whole command) to a test elbo of -127.66 (kl 25.72). The 30 epochs: not run yet.
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=10)
  config.objective.beta = 4.0
  config.objective.kl_warmup_steps = 5000
  return config
