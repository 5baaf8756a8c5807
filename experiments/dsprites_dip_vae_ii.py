r"""DIP-VAE-II (Kumar et al., 2018), lambda_od = lambda_d = 10 in the setting of
disentanglement_lib's study on the dSprites-like shapes (configs.dsprites: its conv
encoder/decoder, 10 latents, Adam at 1e-4, batches of 64, 26 epochs = its 300,000 steps).

  python -m aejax.prepare_shapes --data_dir=/data/tfds
  python -m aejax.main --config=experiments/dsprites_dip_vae_ii.py \
      --workdir=/tmp/dsprites_dip_vae_ii --data_dir=/data/tfds

Not run: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  config = configs.dsprites("dip_vae")
  config.objective.dip_type = "ii"
  config.objective.dip_lambda_od = 10.0
  config.objective.dip_lambda_d = 10.0
  return config
