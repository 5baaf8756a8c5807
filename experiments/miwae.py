r"""Reproduction: Rainforth et al. (2018), "Tighter variational bounds are not necessarily
better", MNIST: MIWAE(M = 8, K = 8), the mean of 8 IWAE bounds of 8 samples each (64 samples per
image), on Burda et al.'s one-stochastic-layer VAE: their architecture, dynamic binarisation and
3280-epoch schedule (aejax/configs.py:burda2015), test NLL estimated with k = 5000. The paper's
test NLL: 84.97 nats.

  python -m aejax.main --config=experiments/miwae.py --workdir=/tmp/miwae

Train/test lines report `miwae_bound` (the objective), `iwae_bound` (IWAE over all 64 samples)
and `elbo`; the number to compare is the test `nll` of the last evaluation.
Result: not run yet: needs an accelerator (~720 h on this CPU for the 3280 epochs, estimated
from this measurement, plus the k = 5000 evaluations). Measured (CPU, 2 cores, shared with other
jobs, load about 15): one epoch on a tenth of the training split, with --config.opt.stages=1
--config.num_epochs=1 "--config.input.train_split=train[:10%]" --config.eval_num_samples=100,
trains in 79 s, 76 images/s (443 s for the whole command, most of it the evaluation) to test
miwae_bound -165.31, iwae_bound (64 samples) -162.17, elbo -205.24, nll (k = 100) 161.87.
"""

from aejax import configs


def get_config():
  config = configs.burda2015(num_samples=8)
  config.loss = "miwae"
  config.model.num_bounds = 8
  return config
