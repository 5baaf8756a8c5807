r"""Reproduction: Rainforth et al. (2018), "Tighter variational bounds are not necessarily
better", MNIST: PIWAE(M = 8, K = 8) on Burda et al.'s one-stochastic-layer VAE: their
architecture, dynamic binarisation and 3280-epoch schedule (aejax/configs.py:burda2015), test NLL
estimated with k = 5000. The decoder climbs IWAE over all 64 samples of an image, the encoder
MIWAE(8, 8) over the same samples (aejax/families/vae.py:bound_metrics). The paper's test NLL:
84.46 nats.

  python -m aejax.main --config=experiments/piwae.py --workdir=/tmp/piwae

Train/test lines report `loss` (= -`iwae_bound`, the decoder's target), `miwae_bound` (the
encoder's) and `elbo`; the number to compare is the test `nll` of the last evaluation.
Result: not run yet: needs an accelerator (~1400 h on this CPU for the 3280 epochs, estimated
from this measurement, plus the k = 5000 evaluations). Measured (CPU, 2 cores, shared with other
jobs, load about 15): one epoch on a tenth of the training split, with --config.opt.stages=1
--config.num_epochs=1 "--config.input.train_split=train[:10%]" --config.eval_num_samples=100,
trains in 154 s, 39 images/s (502 s for the whole command, most of it the evaluation) to test
loss = -iwae_bound 158.53, miwae_bound -162.34, elbo -208.31, nll (k = 100) 158.09.
"""

from aejax import configs


def get_config():
  config = configs.burda2015(num_samples=8)
  config.loss = "piwae"
  config.model.num_bounds = 8
  return config
