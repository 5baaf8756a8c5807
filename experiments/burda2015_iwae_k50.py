r"""Reproduction: Burda, Grosse & Salakhutdinov (2015), Table 1, MNIST, one stochastic layer,
IWAE with k = 50: test NLL 84.78 nats, estimated with k = 5000. Same model, data and schedule as
experiments/burda2015_vae.py (aejax/configs.py:burda2015), trained on the k = 50 bound.

  python -m aejax.main --config=experiments/burda2015_iwae_k50.py \
      --workdir=/tmp/burda2015_iwae_k50

The number to compare is the test `nll` (k = 5000) of the last evaluation.
Result: not run yet: needs an accelerator, ~200 hours on this CPU estimated from a measured 221
s per epoch (CPU, 2 cores, shared with other jobs; measured with --config.opt.stages=1
--config.num_epochs=1 --config.eval_num_samples=0: test iwae_bound -119.41 after that epoch),
plus the k = 5000 evaluations.
"""

from aejax import configs


def get_config():
  return configs.burda2015(num_samples=50)
