r"""The VAE of experiments/vae.py with an inverse autoregressive flow posterior (Kingma et al.,
2016): q_0(z|x) the VAE's diagonal Gaussian, then 2 IAF steps, each a MADE of 320-320 ELU units
given the code and the encoder's 320-unit context, the variables' order reversed between steps.

  python -m aejax.main --config=experiments/flow_vae_iaf.py --workdir=/tmp/flow_vae_iaf

Result (measured, CPU with 2 cores shared with other jobs, bench/sample_quality.sh: 5 epochs,
seeds 0-2 as one vectorised group, 199 s for the group): test NLL 98.70 ± 0.11 nats (k = 1000,
first 2,000 test images) against the plain VAE's 99.76 ± 0.10 at the same budget, lower in each
seed (bench/results/cpu/sample_quality/flow_vae_iaf/).
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.model.name = "flow_vae"
  c.model.flow, c.model.flow_length, c.model.flow_hidden = "iaf", 2, (320, 320)
  return c
