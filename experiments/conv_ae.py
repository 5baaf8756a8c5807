r"""Convolutional autoencoder: two stride-2 convs (32, 64 channels) -> 32-d code -> mirror
transposed convs; Bernoulli cross-entropy on the grey levels as the loss, squared error reported.

  python -m aejax.main --config=experiments/conv_ae.py --workdir=/tmp/conv_ae

Result on the 2-core CPU (2026-11-26, nothing else running): test sq_err 2.98 per image (bce
56.45) after the 20 epochs, 834 s (14 min) for the whole command, 1,578 training examples/s;
the MLP AE of mlp_ae.py trained on the same cross-entropy reaches 3.74 at the same code size. On one
NVIDIA H100 (bench/gpu_check.sh) the same network trained with `--config.loss=mse
--config.model.conv_impl=strided` reached 3.31 in 29.6 s.
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
