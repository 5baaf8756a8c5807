r"""The capacity-annealed beta-VAE (Burgess et al., 2018), gamma = 1000, C to c_max = 25 nats over
100,000 steps in the setting of disentanglement_lib's study on the dSprites-like shapes
(configs.dsprites: its conv encoder/decoder, 10 latents, Adam at 1e-4, batches of 64, 26 epochs
= its 300,000 steps).

  python -m aejax.prepare_shapes --data_dir=/data/tfds
  python -m aejax.main --config=experiments/dsprites_annealed_vae.py \
      --workdir=/tmp/dsprites_annealed_vae --data_dir=/data/tfds

Not run: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  config = configs.dsprites("annealed_vae")
  config.objective.capacity_gamma = 1000.0
  config.objective.capacity_max = 25.0
  config.objective.capacity_steps = 100000
  return config
