"""config.opt + config.learning_rate -> an Optax transformation and its learning-rate schedule.

The config is checked before it gets here (aejax.validation). The train step builds its
optimizer from the run's own hyperparameters (`for_runs`): the learning rate and weight decay
are arrays there, so the runs of a vectorised group each train at their own values while the
structure (optimizer, schedule, clipping) comes from the config they share.
"""

import functools
from typing import Callable

import ml_collections
import optax

NAMES = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "stages", "cosine")


def stages_schedule(lr: float, *, stages: int, growth: int, decay: float,
                    steps_per_epoch: int) -> optax.Schedule:
  """Piecewise constant: stage i lasts growth^i epochs at lr * decay^i (Burda et al., 2015:
  growth 3, decay 10^(-1/7), 8 stages = 3280 epochs). Boundaries are in steps."""
  boundaries, epochs = {}, 0
  for i in range(stages - 1):
    epochs += growth ** i
    boundaries[epochs * steps_per_epoch] = decay  # Scales multiply: stage i has lr * decay^i.
  return optax.piecewise_constant_schedule(lr, boundaries)


def learning_rate(config: ml_collections.ConfigDict, steps_per_epoch: int | None, lr=None):
  """The schedule of `lr` (default: config.learning_rate; an array for a per-run value)."""
  opt = config.opt
  lr = config.learning_rate if lr is None else lr
  if opt.schedule == "constant":
    return lr
  if opt.schedule == "stages":
    if steps_per_epoch is None:
      raise ValueError("the 'stages' schedule needs steps_per_epoch")
    return stages_schedule(lr, stages=opt.stages, growth=opt.stage_growth,
                           decay=opt.stage_decay, steps_per_epoch=steps_per_epoch)
  if opt.schedule == "cosine":
    if steps_per_epoch is None:
      raise ValueError("the 'cosine' schedule needs steps_per_epoch")
    # Decays to 0 at the end of num_epochs; resuming with a larger num_epochs is config drift
    # (the schedule would change), which the run directory's resume check refuses.
    return optax.cosine_decay_schedule(lr, decay_steps=config.num_epochs * steps_per_epoch)
  raise ValueError(f"unknown config.opt.schedule={opt.schedule!r}; use one of {SCHEDULES}")


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int | None = None,
                     hp: dict | None = None) -> optax.GradientTransformation:
  """config.opt's transformation. `hp` (hparams.of, possibly traced) overrides the learning rate
  and weight decay with per-run arrays; the state's structure does not depend on them."""
  opt = config.opt
  hp = hp or {}
  lr = learning_rate(config, steps_per_epoch, hp.get("learning_rate"))
  weight_decay = hp.get("opt.weight_decay", opt.weight_decay)
  if opt.name == "adam":
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  elif opt.name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=weight_decay)
  elif opt.name == "sgd":
    tx = optax.sgd(lr, momentum=opt.momentum or None)
  else:
    raise ValueError(f"unknown config.opt.name={opt.name!r}; use one of {NAMES}")
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx


def for_runs(config: ml_collections.ConfigDict, steps_per_epoch: int | None = None
             ) -> Callable[[dict], optax.GradientTransformation]:
  """The optimizer as a function of a run's hyperparameters (hparams.of): what train_step takes."""
  return functools.partial(create_optimizer, config, steps_per_epoch)
