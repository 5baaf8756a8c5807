r"""Reproduction: Hinton & Salakhutdinov (2006), Science, Fig. 2B. A 784-1000-500-250-30
autoencoder reaches an average squared reconstruction error of 3.00 per test image (PCA with 30
components: 13.87). The paper pre-trains with RBMs and fine-tunes with conjugate gradients; here
the same shape is trained end to end with Adam on the Bernoulli cross-entropy (the paper's MNIST
fine-tuning loss), and `sq_err` on the test split is the number to compare.

  python -m aejax.main --config=experiments/hinton2006_ae30.py --workdir=/tmp/hinton2006 \
      --manual_dir=../shared/data/mnist

Result: not run yet: needs an accelerator, ~1.7 hours on this CPU estimated from a measured 30.1
s per epoch (CPU, 2 cores, shared with other jobs; one epoch reaches a test sq_err of 11.03, 61
s for the whole command).
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "ae"
  config.model.hidden = (1000, 500, 250)
  config.model.latents = 30
  config.model.activation = "relu"
  config.loss = "bce"
  config.batch_size = 128
  config.num_epochs = 200
  config.checkpoint.every_epochs = 5
  return config
