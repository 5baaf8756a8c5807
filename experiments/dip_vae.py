r"""DIP-VAE-I (Kumar et al., 2018) in its MNIST-like setting: the ELBO plus lambda_od times the
squared off-diagonal entries and lambda_d times the squared distance of the diagonal from 1 of
the training batch's covariance of the encoder means, lambda_od = 10 and lambda_d = 10
lambda_od (disentanglement_lib's DIP-VAE-I ratio; its study swept lambda_od over 1-50); the
784-500-10 MLP VAE, Bernoulli decoder, dynamic binarisation. DIP-VAE-II:
--config.objective.dip_type=ii --config.objective.dip_lambda_d=10 (lambda_d = lambda_od).

  python -m aejax.main --config=experiments/dip_vae.py --workdir=/tmp/dip_vae
  python -m aejax.analyze --workdir=/tmp/dip_vae

Train lines report `dip`, the batch's penalty; test lines the ELBO's parts (`rec`, `kl`,
`elbo`). The full 30 epochs: not run.
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=10)
  config.model.name = "dip_vae"
  config.objective.dip_type = "i"
  config.objective.dip_lambda_od = 10.0
  config.objective.dip_lambda_d = 100.0
  return config
