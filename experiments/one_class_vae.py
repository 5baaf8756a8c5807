r"""One-class anomaly detection with the 784-500-8 MLP VAE (experiments/vae.py's shape, 8 latents).

As experiments/one_class_ae.py, with the VAE's scores too: -ELBO (auroc_neg_elbo) and the
importance-sampled NLL (auroc_nll) besides the reconstruction errors:

  python -m aejax.sweep --config=experiments/one_class_vae.py --workdir=/tmp/one_class_vae \
      --sweep="input.train_labels=(0,),(1,),(2,),(3,),(4,),(5,),(6,),(7,),(8,),(9,)"
  for run in /tmp/one_class_vae/*/; do python -m aejax.analyze --workdir="$run" \
      --probe_examples=10000 --k=100 --nll_images=2000 || break; done
  python -m aejax.compare /tmp/one_class_vae \
      --metric=analysis.metrics.auroc_nll,analysis.metrics.auroc_neg_elbo

(--k=100 --nll_images=2000: the NLL on the first 2,000 test images, a few seconds per run on a
CPU; the default k=5000 over the whole split takes an accelerator.) 30 epochs.

Result (measured, CPU with 2 cores, nothing else running, 2026-12-07): mean AUROC over the ten
digits 0.9153 (auroc_nll), 0.9193 (auroc_neg_elbo), 0.9201 (auroc_sq_err); per digit, and the
records of the runs, in docs/anomaly.md.
"""

from aejax import configs


def get_config():
  config = configs.mlp_vae(latents=8)
  config.input.train_labels = (0,)
  config.num_epochs = 30
  return config
