"""The autoencoder families, in one explicit table: config.model.name -> the module that holds it.

A family's module holds its Linen model (`encode`, `code`, `decode`, and `sample` where it has a
prior), the hook that builds it from config.model, its per-example objective terms and what it
reports. Every module defines the names of `Family`; docs/families.md says how to add one.
"""

import difflib
import types
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections

from aejax import hparams
from aejax import sampling
from aejax.families import ae
from aejax.families import annealed_vae
from aejax.families import beta_tcvae
from aejax.families import dip_vae
from aejax.families import flow_vae
from aejax.families import hvae
from aejax.families import rae
from aejax.families import vamp
from aejax.families import vae
from aejax.families import vqvae
from aejax.families import wae
from aejax.families.forward import Metrics


class Family(Protocol):
  """What a family module defines (a module, so no `self` in its functions); `check_module`
  holds every module of the table to these names at import. A family with POOLED keys also
  defines

    from_pooled(metrics, pooled, num_examples, config, hp) -> Metrics

  the test split's metrics (the per-example means) completed from `pooled`, the sums of its
  POOLED keys over the `num_examples` test images. Optional names (OPTIONAL):

    REPORTS: tuple[str, ...]

  train metrics of its own (per_example's keys, e.g. the WAE's 'mmd') that the train log line
  shows after the loss and aejax.analyze reports from the run's last train line. A family
  without a prior whose codes aejax.analyze should sample from by a density fitted after
  training defines

    EX_POST_COMPONENTS: int

  the components of the Gaussian mixture fitted to the train codes (ex_post_components). A
  family whose posterior q(z|x) is a diagonal Gaussian (its model's encode gives mean and
  log-variance) and whose prior is N(0, I) defines

    DIAGONAL_GAUSSIAN_POSTERIOR = True

  and aejax.analyze reports the KL parts of its aggregate posterior (has_kl_parts)."""

  LOSSES: tuple[str, ...]  # The config.loss values it trains with; validation refuses others.
  # It has a likelihood: evaluation (config.eval_num_samples) and aejax.analyze estimate its NLL
  # with aejax.likelihood, and aejax.restore gives its posterior.
  LIKELIHOOD: bool
  # Keys of per_example's evaluation outputs that are additive parts of a statistic of the whole
  # test split, [B, ...]: summed, not averaged, and turned into metrics by from_pooled.
  POOLED: tuple[str, ...]
  # Config fields only this family reads, each with the value that leaves it off: validation
  # holds every other family to that value, so a setting is never silently ignored.
  OWN_FIELDS: dict[str, Any]
  # The test metric aejax.compare tabulates by default (compare.main_metric), e.g. 'elbo'.
  MAIN_METRIC: str

  def create(self, cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
             dtype: str) -> nn.Module:
    """config.model -> its Linen model; the model's __call__(x, stream) gives what per_example
    scores."""

  def per_example(self, model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                  streams: sampling.Streams, config: ml_collections.ConfigDict,
                  hp: hparams.Hparams, *, training: bool, step: jax.Array | None,
                  axis_name: str | None) -> Metrics:
    """model(x_in) scored against x: [B] arrays, 'loss' the objective (see objectives)."""

  def check(self, config: ml_collections.ConfigDict) -> str | None:
    """Why this family cannot train `config` (one line naming the field), or None."""


REQUIRED = (*Family.__annotations__,
            *(n for n, v in vars(Family).items() if callable(v) and not n.startswith("_")))
OPTIONAL = ("from_pooled", "REPORTS", "EX_POST_COMPONENTS", "DIAGONAL_GAUSSIAN_POSTERIOR")


def check_module(name: str, module: Any) -> None:
  """Holds a family module to the names of `Family`: a hook missing, a public UPPERCASE name that
  no part of aejax reads, or a public name close to a hook's (a misspelt optional hook would
  silently turn its feature off) is a TypeError naming the module and the likely intended name.
  A constant of the family's own takes a leading underscore; its classes and other functions
  are its own."""
  known = (*REQUIRED, *OPTIONAL)
  where = f"family {name!r} ({getattr(module, '__name__', module)})"
  defined = {n for n in dir(module) if not n.startswith("_")}
  for hook in REQUIRED + (("from_pooled",) if getattr(module, "POOLED", ()) else ()):
    if hook not in defined:
      close = difflib.get_close_matches(hook, sorted(defined - set(known)), n=1)
      hint = f" (is {close[0]!r} meant to be it?)" if close else ""
      raise TypeError(f"{where} does not define {hook!r}{hint}; see aejax.families.Family")
  for n in sorted(defined - set(known)):
    value = getattr(module, n)
    if isinstance(value, (type, types.ModuleType)):
      continue
    close = difflib.get_close_matches(n, known, n=1, cutoff=0.75)
    if n.isupper() or close:
      hint = f"did you mean {close[0]!r}?" if close else f"aejax reads only {known}"
      raise TypeError(f"{where} defines {n!r}, which no part of aejax reads ({hint}); name a "
                      f"constant of the family's own with a leading underscore")


FAMILIES: dict[str, Family] = {"ae": ae, "vae": vae, "vqvae": vqvae, "wae": wae, "rae": rae,
                               "beta_tcvae": beta_tcvae, "vamp": vamp, "hvae": hvae,
                               "dip_vae": dip_vae, "annealed_vae": annealed_vae,
                               "flow_vae": flow_vae}
for _name, _module in FAMILIES.items():
  check_module(_name, _module)


def of(config: ml_collections.ConfigDict) -> Family:
  return FAMILIES[config.model.name]


def ex_post_components(config: ml_collections.ConfigDict) -> int:
  """Components of the mixture aejax.analyze fits to the train codes to sample from; 0: none."""
  return getattr(of(config), "EX_POST_COMPONENTS", 0)


def reports(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The family's own train metrics that the log line and aejax.analyze show (REPORTS)."""
  return getattr(of(config), "REPORTS", ())


def has_kl_parts(config: ml_collections.ConfigDict) -> bool:
  """Whether aejax.analyze reports the KL parts (losses.kl_parts) of the family's posterior."""
  return getattr(of(config), "DIAGONAL_GAUSSIAN_POSTERIOR", False)


def create_model(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 dtype: str = "float32") -> nn.Module:
  """config.model -> its family's Linen model. The config is checked before it gets here
  (aejax.validation)."""
  return FAMILIES[cfg.name].create(cfg, image_shape, dtype)
