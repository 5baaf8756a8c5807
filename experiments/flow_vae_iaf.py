r"""The VAE of experiments/vae.py with an inverse autoregressive flow posterior (Kingma et al.,
2016): q_0(z|x) the VAE's diagonal Gaussian, then 2 IAF steps, each a MADE of 320-320 ELU units
given the code and the encoder's 320-unit context, the variables' order reversed between steps.

  python -m aejax.main --config=experiments/flow_vae_iaf.py --workdir=/tmp/flow_vae_iaf

Not run at these settings: no measurement of it is claimed.
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.model.name = "flow_vae"
  c.model.flow, c.model.flow_length, c.model.flow_hidden = "iaf", 2, (320, 320)
  return c
