r"""The VAE in the setting of disentanglement_lib's study on the dSprites-like shapes
(configs.dsprites: its conv encoder/decoder, 10 latents, Adam at 1e-4, batches of 64, 26 epochs
= its 300,000 steps).

  python -m aejax.prepare_shapes --data_dir=/data/tfds
  python -m aejax.main --config=experiments/dsprites_vae.py \
      --workdir=/tmp/dsprites_vae --data_dir=/data/tfds

Not run: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  return configs.dsprites("vae")
