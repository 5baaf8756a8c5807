r"""Convolutional VAE: two stride-2 convs (32, 64 channels) -> 20-d Gaussian posterior ->
mirror transposed convs, Bernoulli decoder, ELBO; dynamic binarisation.

  python -m aejax.main --config=experiments/conv_vae.py --workdir=/tmp/conv_vae

Result on the 2-core CPU (2026-12-07, nothing else running): test ELBO -95.36 nats (rec 67.64,
KL 27.71) after the 30 epochs (the MLP VAE of vae.py: -98.75), 929 s (15.5 min) for the whole
command, 2,087 training examples/s (bench/results/cpu/runs/conv_vae.metrics.jsonl). On one
NVIDIA H100 (bench/gpu_check.sh, with `model.conv_impl='strided'`, a train step that drew each
example's noise from its own key): -95.57 in 33.6 s.
"""

from aejax import configs


def get_config():
  return configs.with_conv(configs.mlp_vae())
