r"""Reproduction: Burda, Grosse & Salakhutdinov (2015), Table 1, MNIST, two stochastic layers,
VAE (k = 1): test NLL 85.33 nats, estimated with k = 5000. 784-200-200-100 (z1) -100-100-50 (z2)
tanh inference networks, the generative ones mirrored (the 'hvae' family), dynamic
binarisation, and the one-layer reproduction's optimiser and 3280-epoch schedule
(experiments/burda2015_vae.py). The config lives in aejax/configs.py:burda2015_two_layers.

  python -m aejax.main --config=experiments/burda2015_vae_2layer.py \
      --workdir=/tmp/burda2015_vae_2layer

The number to compare is the test `nll` (k = 5000) of the last evaluation.
Result: not run yet: needs an accelerator, ~28 hours on this CPU estimated from a measured 30.9
s per epoch (CPU, 2 cores, shared with other jobs, load ~14; measured with --config.opt.stages=1
--config.num_epochs=1 --config.eval_num_samples=100: test elbo -142.65 and nll (k = 100) 135.17
after that epoch, 300 s for the whole command, 217 s of it the k = 100 NLL), plus the k = 5000
evaluations.
"""

from aejax import configs


def get_config():
  return configs.burda2015_two_layers(num_samples=1)
