"""The autoencoder families, in one explicit table: config.model.name -> the module that holds it.

A family's module holds its Linen model (`encode`, `code`, `decode`, and `sample` where it has a
prior), the hook that builds it from config.model, its per-example objective terms and what it
reports. Every module defines the names of `Family`; docs/families.md says how to add one.
"""

from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections

from aejax import hparams
from aejax.families import ae
from aejax.families import beta_tcvae
from aejax.families import hvae
from aejax.families import rae
from aejax.families import vamp
from aejax.families import vae
from aejax.families import vqvae
from aejax.families import wae
from aejax.families.forward import Metrics


class Family(Protocol):
  """What a family module defines (a module, so no `self` in its functions). A family with
  POOLED keys also defines

    from_pooled(metrics, pooled, num_examples, config, hp) -> Metrics

  the test split's metrics (the per-example means) completed from `pooled`, the sums of its
  POOLED keys over the `num_examples` test images. A family without a prior whose codes
  aejax.analyze should sample from by a density fitted after training defines

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

  def create(self, cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
             dtype: str) -> nn.Module:
    """config.model -> its Linen model; the model's __call__(x, keys_B) gives what per_example
    scores."""

  def per_example(self, model: Any, params: Any, x_in: jax.Array, x: jax.Array,
                  keys_B: jax.Array, config: ml_collections.ConfigDict, step: jax.Array | None,
                  hp: hparams.Hparams, axis_name: str | None) -> Metrics:
    """model(x_in) scored against x: [B] arrays, 'loss' the objective (see objectives)."""

  def check(self, config: ml_collections.ConfigDict) -> str | None:
    """Why this family cannot train `config` (one line naming the field), or None."""


FAMILIES: dict[str, Family] = {"ae": ae, "vae": vae, "vqvae": vqvae, "wae": wae, "rae": rae,
                               "beta_tcvae": beta_tcvae, "vamp": vamp, "hvae": hvae}


def of(config: ml_collections.ConfigDict) -> Family:
  return FAMILIES[config.model.name]


def ex_post_components(config: ml_collections.ConfigDict) -> int:
  """Components of the mixture aejax.analyze fits to the train codes to sample from; 0: none."""
  return getattr(of(config), "EX_POST_COMPONENTS", 0)


def has_kl_parts(config: ml_collections.ConfigDict) -> bool:
  """Whether aejax.analyze reports the KL parts (losses.kl_parts) of the family's posterior."""
  return getattr(of(config), "DIAGONAL_GAUSSIAN_POSTERIOR", False)


def create_model(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 dtype: str = "float32") -> nn.Module:
  """config.model -> its family's Linen model. The config is checked before it gets here
  (aejax.validation)."""
  return FAMILIES[cfg.name].create(cfg, image_shape, dtype)
