r"""Beta-TCVAE (Chen et al., 2018), total correlation weighted beta = 6 in the setting of
disentanglement_lib's study on the dSprites-like shapes (configs.dsprites: its conv
encoder/decoder, 10 latents, Adam at 1e-4, batches of 64, 26 epochs = its 300,000 steps).

  python -m aejax.prepare_shapes --data_dir=/data/tfds
  python -m aejax.main --config=experiments/dsprites_beta_tcvae.py \
      --workdir=/tmp/dsprites_beta_tcvae --data_dir=/data/tfds

Not run: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  config = configs.dsprites("beta_tcvae")
  config.objective.tc_beta = 6.0
  return config
