r"""Convolutional autoencoder: two stride-2 convs (32, 64 channels) -> 32-d code -> mirror
transposed convs; squared-error loss.

  python -m aejax.main --config=experiments/conv_ae.py --workdir=/tmp/conv_ae \
      --manual_dir=../shared/data/mnist

Result (measured on one NVIDIA H100, 2026-11-26, `bench/gpu_check.sh`, with the strided
convolutions that were then the default): test sq_err 3.31 per image after the 20 epochs (the MLP
AE of mlp_ae.py: 3.75 at the same code size), 29.6 s for the whole command. Not trained in full
on the 2-core CPU.
"""

from aejax import configs


def get_config():
  config = configs.with_conv(configs.base())
  config.model.latents = 32
  # Cross-entropy on the grey levels, not squared error: through the sigmoid, squared error
  # lets every logit saturate at the background within the first few steps, where its gradient
  # vanishes (on the CPU every seed tried ends there, at sq_err 89).
  config.loss = "bce"
  config.num_epochs = 20
  return config
