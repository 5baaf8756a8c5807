r"""Convolutional VAE: two stride-2 convs (32, 64 channels) -> 20-d Gaussian posterior ->
mirror transposed convs, Bernoulli decoder, ELBO; dynamic binarisation.

  python -m aejax.main --config=experiments/conv_vae.py --workdir=/tmp/conv_vae

Result on the 2-core CPU (2026-11-26, nothing else running): test ELBO -95.63 nats (rec 67.66,
KL 27.97) after the 30 epochs (the MLP VAE of vae.py: -98.75), 1,284 s (21 min) for the whole
command, 1,526 training examples/s. On one NVIDIA H100 (bench/gpu_check.sh, with
`model.conv_impl='strided'`): -95.57 in 33.6 s. Both were trained when each example drew its
noise from its own key, before the step drew each batch's at once; they were not re-run since.
"""

from aejax import configs


def get_config():
  return configs.with_conv(configs.mlp_vae())
