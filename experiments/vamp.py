r"""VAE with a VampPrior (Tomczak & Welling, 2018), one stochastic layer, MNIST: K = 500
pseudo-inputs, a 40-d latent, 300-300 encoder and mirror decoder, Bernoulli decoder, batch 100,
Adam at 5e-4, the KL weight warmed up over 100 epochs, test NLL from 5000 importance samples.
This repository's MLP has plain ReLU layers where the paper has gated ones and no clip on the
posterior's log-variance, and MNIST is binarised dynamically (the statically binarised MNIST of
the paper is not among its datasets); the paper trains up to 2000 epochs with early stopping,
here a fixed 300.

  python -m aejax.main --config=experiments/vamp.py --workdir=/tmp/vamp

The paper's value: test NLL 85.57 nats ('VAE + VampPrior', statically binarised MNIST).
Measured (CPU, 2 cores, shared with other jobs at a load of about 15), 3 epochs with the test
NLL from k = 500 samples (--config.num_epochs=3 --config.eval_every_epochs=3
--config.eval_num_samples=500 --config.eval_batch_size=1000): test NLL 149.27, ELBO -159.71
(reconstruction 60.24, KL 99.47: the KL weight had reached only 0.025 of its 100-epoch warm-up);
8 min of training, 28 min for the k = 500 evaluation, 36 min wall. The 300 epochs: not run yet.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "vamp"
  config.model.hidden = (300, 300)
  config.model.latents = 40
  config.model.num_pseudo = 500
  config.loss = "elbo"
  config.input.binarize = "dynamic"
  config.batch_size = 100
  config.learning_rate = 5e-4
  config.objective.kl_warmup_steps = 100 * 600  # 100 epochs of the 60k training images.
  config.num_epochs = 300
  config.eval_batch_size = 100  # 100 images x 100 samples per chunk.
  config.eval_num_samples = 5000
  config.eval_every_epochs = 100  # k = 5000 costs 5000 decoder passes per test image.
  config.checkpoint.every_epochs = 10
  return config
