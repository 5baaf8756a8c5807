"""config.opt + config.learning_rate -> an Optax transformation."""

import ml_collections
import optax

from aejax.errors import UserError

NAMES = ("adam", "adamw", "sgd")


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  opt = config.opt
  lr = config.learning_rate
  if opt.name == "adam":
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  elif opt.name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    tx = optax.sgd(lr, momentum=opt.b1 or None)
  else:
    raise UserError(f"unknown config.opt.name={opt.name!r}; use one of {NAMES}")
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx
