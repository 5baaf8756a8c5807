r"""The VAE of experiments/vae.py with a planar-flow posterior (Rezende & Mohamed, 2015): q_0(z|x)
the VAE's diagonal Gaussian, then 10 planar steps whose parameters (u, w, b of each) the encoder
computes per image. --config.model.flow=radial gives 10 radial steps instead.

  python -m aejax.main --config=experiments/flow_vae_planar.py --workdir=/tmp/flow_vae_planar

Result (measured, CPU with 2 cores shared with other jobs, bench/sample_quality.sh: 5 epochs,
seeds 0-2 as one vectorised group, 168 s for the group): test NLL 100.2 ± 0.3 nats (k = 1000,
first 2,000 test images), no better than the plain VAE's 99.76 ± 0.10 at this budget
(bench/results/cpu/sample_quality/flow_vae_planar/). Radial steps: not run.
"""

from aejax import configs


def get_config():
  c = configs.mlp_vae()
  c.model.name = "flow_vae"
  c.model.flow, c.model.flow_length = "planar", 10
  return c
