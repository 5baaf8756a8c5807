r"""Reproduction: Burda, Grosse & Salakhutdinov (2015), Table 1, MNIST, two stochastic layers,
IWAE with k = 50: test NLL 82.90 nats, estimated with k = 5000. The model, data and schedule of
experiments/burda2015_vae_2layer.py (aejax/configs.py:burda2015_two_layers), trained on the
k = 50 bound.

  python -m aejax.main --config=experiments/burda2015_iwae_2layer_k50.py \
      --workdir=/tmp/burda2015_iwae_2layer_k50

The number to compare is the test `nll` (k = 5000) of the last evaluation.
Result: not run yet: needs an accelerator, ~850 hours on this CPU estimated from a measured 932
s per epoch (CPU, 2 cores, shared with other jobs, load ~14; measured with --config.opt.stages=1
--config.num_epochs=1 --config.eval_num_samples=100: test iwae_bound (k = 50) -125.92, elbo
-153.26 and nll (k = 100) 124.49 after that epoch, 22 min for the whole command), plus the
k = 5000 evaluations.
"""

from aejax import configs


def get_config():
  return configs.burda2015_two_layers(num_samples=50)
