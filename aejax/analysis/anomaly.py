"""Anomaly detection with held-out classes, the way the MNIST literature measures it.

A run trained on some labels (config.input.train_labels) scores every test image; the test images
of the trained labels are normal, those of the other labels anomalous, and a higher score (worse
reconstruction, lower likelihood) should mean anomalous. One-class (Ruff et al. 2018): train on
one digit, the other nine are the anomalies; leave-one-class-out: train on nine.
"""

import numpy as np

from aejax.analysis import probes

# The scores, each higher for an image the model explains worse, and what each is.
SCORE_TEXT = {
    "sq_err": "reconstruction squared error",
    "bce": "reconstruction Bernoulli cross-entropy",
    "rec_nll": "reconstruction -log p(x|z) under the decoder's distribution",
    "neg_elbo": "-ELBO",
    "nll": "importance-sampled NLL",
}


def held_out_aurocs(scores: dict[str, np.ndarray], labels_N: np.ndarray, normal_labels
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, str]]:
  """({'auroc_<score>': AUROC of all anomalies}, {score: {label: AUROC of that label alone}},
  {'auroc_<score>': why it is left out}).

  A score array shorter than `labels_N` belongs to the first test images (the NLL may be
  estimated on a prefix of the split). Every AUROC is scikit-learn's roc_auc_score (probes.auroc)
  of the normal images against the anomalous ones; a prefix without a normal or without an
  anomalous image has none (scikit-learn would give NaN), so that score is left out, with why.
  """
  overall, per_label, left_out = {}, {}, {}
  for name, scores_n in scores.items():
    labels_n = labels_N[:len(scores_n)]
    normal_n = np.isin(labels_n, np.asarray(normal_labels))
    if normal_n.all() or not normal_n.any():
      left_out[f"auroc_{name}"] = (
          f"not measured: the first {len(scores_n)} test images, which {name} is estimated on, "
          f"hold no {'anomalous' if normal_n.all() else 'normal'} image; pass a larger "
          f"--nll_images (0: the whole test split)")
      continue
    overall[f"auroc_{name}"] = probes.auroc(scores_n[normal_n], scores_n[~normal_n])
    per_label[name] = {str(label): probes.auroc(scores_n[normal_n], scores_n[labels_n == label])
                       for label in np.unique(labels_n[~normal_n]).tolist()}
  return overall, per_label, left_out


def protocol(normal_labels, labels_N: np.ndarray, counts: dict[str, int]) -> str:
  """How held_out_aurocs measured its numbers, in words (for metrics.json's `protocols`)."""
  normal_N = np.isin(labels_N, np.asarray(normal_labels))
  held_out = np.unique(labels_N[~normal_N]).tolist()
  scores = "; ".join(f"{SCORE_TEXT[name]} ({name}) on the first {n} test images"
                     for name, n in counts.items())
  return (f"held-out classes: the model trained on labels {list(normal_labels)} only; their "
          f"{int(normal_N.sum())} test images are normal, the {int((~normal_N).sum())} of labels "
          f"{held_out} anomalous; AUROC (scikit-learn roc_auc_score, anomalous = positive, "
          f"higher score = more anomalous) of {scores}; auroc_per_label: the normal images "
          f"against one anomalous label's")


def report_lines(normal_labels, per_label: dict[str, dict[str, float]]) -> list[str]:
  """A markdown table: one row per anomalous label, one column per score."""
  names = list(per_label)
  labels = list(next(iter(per_label.values()), {}))
  lines = [f"## Held-out AUROC per anomalous label (trained on {list(normal_labels)})", "",
           "| label | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for label in labels:
    lines.append(f"| {label} | " + " | ".join(
        f"{per_label[n][label]:.4f}" if label in per_label[n] else "-" for n in names) + " |")
  return lines + [""]
