"""config.opt + config.learning_rate -> an Optax transformation and its learning-rate schedule."""

import ml_collections
import optax

from aejax.errors import UserError

NAMES = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "stages")


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
    if opt.stages < 1 or opt.stage_growth < 1 or not 0 < opt.stage_decay <= 1:
      raise UserError(f"config.opt.stages={opt.stages} and stage_growth={opt.stage_growth} "
                      f"must be >= 1 and stage_decay={opt.stage_decay} in (0, 1]")
    total = sum(opt.stage_growth ** i for i in range(opt.stages))
    if config.num_epochs != total:
      # Training past the last stage would silently keep its rate; stopping early skips stages.
      raise UserError(f"config.num_epochs={config.num_epochs} does not match the 'stages' "
                      f"schedule of {total} epochs; set --config.num_epochs={total} or change "
                      f"config.opt.stages")
    if steps_per_epoch is None:
      raise ValueError("the 'stages' schedule needs steps_per_epoch")
    return stages_schedule(lr, stages=opt.stages, growth=opt.stage_growth,
                           decay=opt.stage_decay, steps_per_epoch=steps_per_epoch)
  raise UserError(f"unknown config.opt.schedule={opt.schedule!r}; use one of {SCHEDULES}")


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
    tx = optax.sgd(lr, momentum=opt.b1 or None)
  else:
    raise UserError(f"unknown config.opt.name={opt.name!r}; use one of {NAMES}")
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx
