r"""Reproduction: Burda, Grosse & Salakhutdinov (2015), Table 1, MNIST, one stochastic layer,
VAE (k = 1): test NLL 86.76 nats, estimated with k = 5000. 784-200-200-50 tanh encoder, mirror
decoder, dynamic binarisation, Adam (b1 0.9, b2 0.999, eps 1e-4), batches of 20, 3^i epochs at
1e-3 * 10^(-i/7) for i = 0..7 (3280 epochs). The config lives in aejax/configs.py:burda2015.

  python -m aejax.main --config=experiments/burda2015_vae.py --workdir=/tmp/burda2015_vae

The number to compare is the test `nll` (k = 5000) of the last evaluation.
Result: not run yet: needs an accelerator, ~12 hours on this CPU estimated from a measured 13.0
s per epoch (CPU, 2 cores, shared with other jobs; measured with --config.opt.stages=1
--config.num_epochs=1 --config.eval_num_samples=0: test elbo -134.96 after that epoch), plus the
k = 5000 evaluations.
"""

from aejax import configs


def get_config():
  return configs.burda2015(num_samples=1)
