r"""beta-TCVAE (Chen et al., 2018) in its MNIST-like setting: the KL term's total correlation
weighted beta = 6, index-code MI and dimension-wise KL weighted 1, each estimated from the batch
by minibatch weighted sampling (N = the training split's size); the 784-500-10 MLP VAE,
Bernoulli decoder, dynamic binarisation.

  python -m aejax.main --config=experiments/beta_tcvae.py --workdir=/tmp/beta_tcvae
  python -m aejax.analyze --workdir=/tmp/beta_tcvae

Train lines report `mi`, `tc` and `dwkl` (the batch estimates); test lines the plain ELBO's parts
(`rec`, `kl`, `elbo`); aejax.analyze the parts of the test split's aggregate posterior.
MEASURED
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=10)
  config.model.name = "beta_tcvae"
  config.objective.tc_beta = 6.0
  return config
