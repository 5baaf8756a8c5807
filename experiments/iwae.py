r"""IWAE: the 784-500-20 MLP VAE trained on the importance-weighted bound with k = 5 samples;
the last evaluation adds the test NLL estimated with k = 1000 (`nll`). Dynamic binarisation.

  python -m aejax.main --config=experiments/iwae.py --workdir=/tmp/iwae \
      --manual_dir=../shared/data/mnist

Train/test lines report `iwae_bound` (k = 5) and `elbo` (mean single-sample ELBO of the same
draws). The paper-scale run is experiments/burda2015_iwae_k50.py.
Result and time: see the README's zoo table (one row per measured run; "not run yet" otherwise).
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
