r"""IWAE: the 784-500-20 MLP VAE trained on the importance-weighted bound with k = 5 samples;
the last evaluation adds the test NLL estimated with k = 1000 (`nll`). Dynamic binarisation.

  python -m aejax.main --config=experiments/iwae.py --workdir=/tmp/iwae

Train/test lines report `iwae_bound` (k = 5) and `elbo` (mean single-sample ELBO of the same
draws). The paper-scale run is experiments/burda2015_iwae_k50.py.
Measured (CPU, 2 cores, shared with other jobs): one epoch with --config.num_epochs=1
--config.eval_num_samples=100 trains in 23.2 s (154 s for the whole command, most of it the k =
100 NLL) to a test iwae_bound of -113.70, elbo -118.21 and nll (k = 100) 110.93. The 30 epochs:
not run yet.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "vae"
  config.model.hidden = (500,)
  config.model.latents = 20
  config.input.binarize = "dynamic"
  config.loss = "iwae"
  config.model.num_samples = 5
  config.num_epochs = 30
  config.eval_every_epochs = 30  # The k = 1000 NLL is the costly part of an evaluation.
  config.eval_num_samples = 1000
  config.eval_sample_chunk = 100
  return config
