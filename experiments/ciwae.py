r"""Reproduction: Rainforth et al. (2018), "Tighter variational bounds are not necessarily
better", MNIST: CIWAE(beta = 0.05), 0.05 x ELBO + 0.95 x IWAE of the same K = 64 samples per
image, on Burda et al.'s one-stochastic-layer VAE: their architecture, dynamic binarisation and
3280-epoch schedule (aejax/configs.py:burda2015), test NLL estimated with k = 5000. The paper's
test NLL: 84.57 nats.

  python -m aejax.main --config=experiments/ciwae.py --workdir=/tmp/ciwae

Train/test lines report `ciwae_bound` (the objective), `iwae_bound` and `elbo` of the same 64
samples; the number to compare is the test `nll` of the last evaluation.
Result: not run yet: needs an accelerator (~500 h on this CPU for the 3280 epochs, estimated
from this measurement, plus the k = 5000 evaluations). Measured (CPU, 2 cores, shared with other
jobs, load about 15): one epoch on a tenth of the training split, with --config.opt.stages=1
--config.num_epochs=1 "--config.input.train_split=train[:10%]" --config.eval_num_samples=100,
trains in 54 s, 111 images/s (345 s for the whole command, most of it the evaluation) to test
ciwae_bound -165.14, iwae_bound -163.88, elbo -189.13, nll (k = 100) 163.36.
"""

from aejax import configs


def get_config():
  config = configs.burda2015(num_samples=64)
  config.loss = "ciwae"
  config.objective.ciwae_beta = 0.05
  return config
