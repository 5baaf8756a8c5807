r"""The VAE of experiments/vae.py with a planar-flow posterior (Rezende & Mohamed, 2015): q_0(z|x)
the VAE's diagonal Gaussian, then 10 planar steps whose parameters (u, w, b of each) the encoder
computes per image. --config.model.flow=radial gives 10 radial steps instead.

  python -m aejax.main --config=experiments/flow_vae_planar.py --workdir=/tmp/flow_vae_planar

Not run at these settings: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.model.name = "flow_vae"
  c.model.flow, c.model.flow_length = "planar", 10
  return c
