r"""The likelihood models at one equal, small budget on the CPU: dynamically binarised MNIST, Adam
(1e-3, eps 1e-4, constant), batches of 100 and 10 epochs for each, Burda et al.'s networks
(784-200-200-50 tanh; the two-layer models 784-200-200-100-100-100-50), and the test NLL
estimated with k = 1000 on the full test split after the last epoch. Every bound loss uses 8
posterior samples per image: IWAE k = 8; MIWAE and PIWAE M = 2 bounds of K = 4; CIWAE K = 8 with
beta 0.05. The VampPrior has 500 pseudo-inputs and the one-layer networks; 'vamp_warmup' adds the
KL warm-up its paper trains with (here over the first 5 epochs).

  python -m aejax.main --config=experiments/equal_budget.py:vae --workdir=/tmp/equal_budget/vae

trains one variant (the argument: one of VARIANTS); bench/equal_budget.sh trains them all, one
at a time, and tabulates them with aejax.compare. The table, its hardware and wall times are in
docs/reproductions.md.
"""

from aejax import configs

SAMPLES = 8  # Posterior samples per training image of every bound loss.
VARIANTS = ("vae", "iwae", "miwae", "piwae", "ciwae", "vamp", "vamp_warmup", "vae_2layer",
            "iwae_2layer")


def get_config(variant: str = "vae"):
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; pass one of {', '.join(VARIANTS)}")
  k = 1 if variant in ("vae", "vamp", "vamp_warmup", "vae_2layer") else SAMPLES
  c = (configs.burda2015_two_layers if variant.endswith("2layer") else configs.burda2015)(k)
  if variant in ("miwae", "piwae"):
    c.loss, c.model.num_bounds, c.model.num_samples = variant, 2, SAMPLES // 2
  elif variant == "ciwae":
    c.loss, c.objective.ciwae_beta = "ciwae", 0.05
  elif variant.startswith("vamp"):
    c.model.name, c.model.num_pseudo = "vamp", 500
    if variant == "vamp_warmup":
      c.objective.kl_warmup_steps = 3000  # 5 epochs of 600 steps.
  c.batch_size = 100
  c.opt.schedule = "constant"
  c.num_epochs = 10
  c.eval_every_epochs = c.num_epochs
  c.checkpoint.every_epochs = 5
  c.eval_num_samples = 1000
  return c
