"""Per-run hyperparameters: the numeric config fields that enter the train step as arrays.

A run reads these values from `of(config)` rather than from the config, so a vectorised group
(one compiled program, a leading run axis) can give every run its own values: the same code
traces them as scalars for one run and as a [G] batch under `vmap`. Every other field fixes
shapes or the program's structure, so runs differing there cannot share a program:
`group_key` tells which runs can.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections

from aejax import configs

# Config fields that may differ between the runs of one group (besides `seed`).
FIELDS = ("learning_rate", "objective.beta", "objective.kl_warmup_steps", "input.noise_level",
          "objective.l1_code", "objective.sparsity_weight", "objective.commitment",
          "opt.weight_decay", "objective.mmd_weight", "objective.code_l2",
          "objective.decoder_reg", "objective.tc_alpha", "objective.tc_beta",
          "objective.tc_gamma", "objective.ciwae_beta", "objective.dip_lambda_od",
          "objective.dip_lambda_d", "objective.capacity_gamma", "objective.capacity_max",
          "objective.capacity_steps")
# Not a config field: the training split's size, which the trainer adds to a run's `hp`
# (group.run_inputs) for objectives that estimate a statistic of the whole split from a batch
# (beta_tcvae). The loaded split knows it (a fraction, config.input.train_labels); a field the
# user sets could disagree, and one filled in at load time would make config.json differ from
# the command's config, which a resume refuses.
NUM_TRAIN = "data.num_train"

Hparams = dict[str, jax.Array]


def of(config: ml_collections.ConfigDict) -> Hparams:
  """The run's values of FIELDS as float32 scalars, keyed by field name."""
  return {f: jnp.asarray(configs.field(config, f), jnp.float32) for f in FIELDS}


def structure(config: ml_collections.ConfigDict) -> dict[str, bool]:
  """Which optional terms the objective adds: a zero weight drops a term from the program, so
  runs with and without it are traced differently. The one place that decides it: the families'
  objectives (aejax/families) switch their terms on from this, and `group_key` groups runs by
  it."""
  o = config.objective
  return {"kl_weighted": bool(o.beta != 1 or o.kl_warmup_steps), "l1_code": bool(o.l1_code),
          "sparsity": bool(o.sparsity_weight), "decoder_reg": bool(o.decoder_reg)}


def group_key(config: ml_collections.ConfigDict) -> str:
  """Equal for runs that can train in one vectorised group: every field but `seed` and FIELDS
  equal, and the same optional terms."""
  from aejax.run import rundir  # The one flattening of a config's JSON.

  flat = rundir.flatten(json.loads(config.to_json_best_effort()))
  for f in ("seed", *FIELDS):
    flat.pop(f, None)
  return json.dumps({"fields": flat, "terms": structure(config)}, sort_keys=True, default=str)
