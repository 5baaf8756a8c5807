r"""beta-TCVAE (Chen et al., 2018) in its MNIST-like setting: the KL term's total correlation
weighted beta = 6, index-code MI and dimension-wise KL weighted 1, each estimated from the batch
by minibatch weighted sampling (N = the training split's size); the 784-500-10 MLP VAE,
Bernoulli decoder, dynamic binarisation.

  python -m aejax.main --config=experiments/beta_tcvae.py --workdir=/tmp/beta_tcvae
  python -m aejax.analyze --workdir=/tmp/beta_tcvae

Train lines report `mi`, `tc` and `dwkl`, the batch's minibatch-weighted estimates: their
normaliser log(N M) puts them exactly +log N, +(latents - 1) log N and -latents log N from the
batch's own aggregate (normaliser log M), constants that leave the gradients alone (here N =
60,000: tc carries +99 nats); test lines report the ELBO's
parts (`rec`, `kl`, `elbo`); aejax.analyze the parts of the test split's exact aggregate
posterior (index_code_mi, total_correlation, dimensionwise_kl).
Measured (CPU, 2 cores, shared with other jobs): one epoch (--config.num_epochs=1) trains at
6,733 examples/s (50 s for the whole command) to a test elbo of -140.98 (kl 7.81); `python -m
aejax.analyze --workdir=/tmp/beta_tcvae --k=100` (3 min 45 s) gives nll 127.21, index_code_mi
5.91, total_correlation 0.93, dimensionwise_kl 0.99 nats (sum 7.82). The 30 epochs: not run.
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=10)
  config.model.name = "beta_tcvae"
  config.objective.tc_beta = 6.0
  return config
