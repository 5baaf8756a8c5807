r"""One-class anomaly detection (Ruff et al. 2018): a 784-256-64-8 MLP AE trained on one digit.

The test images of the trained digit are normal, the other nine digits' anomalous; aejax.analyze
scores each test image by its reconstruction error and reports the AUROC (auroc_sq_err, auroc_bce)
and one per anomalous digit. The protocol's table is ten runs, one per digit, and their mean:

  python -m aejax.sweep --config=experiments/one_class_ae.py --workdir=/tmp/one_class_ae \
      --sweep="input.train_labels=(0,),(1,),(2,),(3,),(4,),(5,),(6,),(7,),(8,),(9,)"
  for run in /tmp/one_class_ae/*/; do
    python -m aejax.analyze --workdir="$run" --probe_examples=10000 || break; done
  python -m aejax.compare /tmp/one_class_ae \
      --metric=analysis.metrics.auroc_sq_err,analysis.metrics.auroc_bce

A small code (8) so that the model cannot reconstruct every digit well; about 6,000 training
images per digit (42 to 52 steps of 128 per epoch), 30 epochs.

Result (measured, CPU with 2 cores shared with other jobs): mean AUROC over the ten digits 0.9618
(auroc_sq_err), 0.9249 (auroc_bce); per digit, and the records of the runs, in
docs/anomaly.md.
"""

from aejax import configs


def get_config():
  config = configs.base()
  config.model.name = "ae"
  config.model.hidden = (256, 64)
  config.model.latents = 8
  config.loss = "mse"
  config.input.train_labels = (0,)
  config.num_epochs = 30
  return config
