"""config -> per-example metrics of a batch: the objective of the family the config names.

Each family (aejax.families) composes its terms from `losses` with the weights of
`config.objective`; this module looks the family up and calls it. Everything is per example ([B]
arrays, 'loss' the objective), so the train step averages it and evaluation sums it under a mask.
"""

from typing import Any

import jax
import ml_collections

from aejax import families
from aejax import hparams
from aejax import sampling
from aejax.families import shared
from aejax.families.forward import Metrics


def per_example(model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                streams: sampling.Streams, config: ml_collections.ConfigDict, hp: hparams.Hparams,
                *, training: bool, step: jax.Array | None = None,
                axis_name: str | None = None) -> Metrics:
  """Scores model(x_in) against the target x. `streams`: the examples' randomness
  (sampling.streams); `training`: a train step's objective (at train step `step`, which drives
  schedules such as the KL warm-up), else evaluation's; `axis_name`: the pmap axis that batch
  statistics pool over. The weights come from `hp` (hparams.of); which terms exist, from
  hparams.structure alone (runs that differ there cannot share a program, so the same rule
  groups them).

  Evaluation also returns the additive parts of the batch statistics, per example (the family's
  POOLED keys, [B, ...]), so that `from_sums` derives them once over the whole test split, and,
  for a family with a likelihood, the test NLL of config.eval_num_samples samples.
  """
  family = families.of(config)
  metrics = family.per_example(model, params, x_in, x, streams, config, hp, training=training,
                               step=step, axis_name=axis_name)
  if not training and family.LIKELIHOOD and config.eval_num_samples:
    metrics = {**metrics, **shared.test_nll(model, params, x_in, x, streams, config)}
  return metrics


def from_sums(sums: Metrics, num_examples: jax.Array, config: ml_collections.ConfigDict,
              hp: hparams.Hparams) -> Metrics:
  """Evaluation's sums over the unmasked test images -> per-image means, with the batch
  statistics derived once from their pooled parts: what a single batch of the whole split would
  report, whatever eval_batch_size and padding."""
  family, sums = families.of(config), dict(sums)
  pooled = {k: sums.pop(k) for k in family.POOLED if k in sums}
  metrics = {k: v / num_examples for k, v in sums.items()}
  return family.from_pooled(metrics, pooled, num_examples, config, hp) if pooled else metrics
